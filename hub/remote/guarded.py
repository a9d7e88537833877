"""HTTP under a deadline: every request a pull makes ends by the pull's deadline, whatever the server does.

`guarded_stream` opens a request on huggingface_hub's shared client (so its configuration, proxies and hooks apply)
with every timeout set to the time left, and arms a watchdog that shuts the connection down when the deadline
passes: a server that stalls before its headers hits the read timeout, one that drips a byte at a time or stalls
mid-body is cut off by the watchdog. Either way the caller gets `RemoteTimeoutError` naming what it was doing.
A connection abandoned mid-answer is shut down, never handed back to the pool (a lying Content-Length would leave
bytes in it that poison the next request). `read_capped` reads a body up to a byte cap.
"""
from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from hub.remote.base import Deadline
from hub.remote.errors import BadResponseError


def _socket_of(response: Any) -> socket.socket | None:
    stream = getattr(response, "extensions", {}).get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # another transport: the read timeout still bounds each wait
        return None
    return sock if isinstance(sock, socket.socket) else None


def _shutdown(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


@contextmanager
def guarded_stream(method: str, url: str, headers: Mapping[str, str], deadline: Deadline, what: str,
                   follow_redirects: bool) -> Iterator[Any]:
    """A streamed response that cannot outlive `deadline` (see the module docstring). `what` names the repo and
    file for the timeout error."""
    import httpx2
    from huggingface_hub.utils import get_session

    remaining = deadline.remaining()
    if remaining <= 0:
        raise deadline.error(what)
    fired = threading.Event()
    timer: threading.Timer | None = None
    try:
        with get_session().stream(method, url, headers=dict(headers), timeout=httpx2.Timeout(remaining),
                                  follow_redirects=follow_redirects) as response:
            sock = _socket_of(response)

            def fire() -> None:
                fired.set()
                _shutdown(sock)

            timer = threading.Timer(max(0.0, deadline.remaining()), fire)
            timer.daemon = True
            timer.start()
            try:
                yield response
            except BaseException:
                _shutdown(sock)  # never reuse a connection left mid-answer
                raise
    except httpx2.TimeoutException:
        raise deadline.error(what) from None
    except httpx2.TransportError:
        if fired.is_set() or deadline.expired:
            raise deadline.error(what) from None
        raise
    finally:
        if timer is not None:
            timer.cancel()


def read_capped(response: Any, cap: int, deadline: Deadline, what: str) -> bytes:
    """The whole body of `response`, refusing one over `cap` bytes (read no further than that)."""
    length = response.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > cap:
        raise BadResponseError(f"{what}: the server's answer is {int(length)} bytes, over the {cap}-byte limit; "
                               "refused")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise BadResponseError(f"{what}: the server's answer is over the {cap}-byte limit; refused")
        deadline.check(what)
    return bytes(body)
