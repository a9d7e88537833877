"""What the real Hub's `POST /api/validate-yaml` checks in a model card's front matter, for the fields mdhub writes.

The loopback Hub (tests/hub_server.py) answers validate-yaml with `validate_readme`, so a card the Hub would refuse
fails our tests. Rules (the Hub's model-card metadata spec, hub-docs modelcard.md and its JSON schema):

- `library_name`: a string; `license`: one of the Hub's license ids (lower case, e.g. mit, apache-2.0, other);
  `pipeline_tag`: one of the Hub's pipeline tags; `tags`, `datasets`: lists of strings;
- `model-index`: a list of {name: str, results: [{task: {type: str, name?: str}, dataset: {type: str, name: str,
  config?, split?, revision?: str, args?}, metrics: [{type: str, value: any non-null, name?, config?: str,
  args?, verified?: bool}], source?: {url: str, name?: str}}]}.
Unknown top-level keys are allowed (the Hub keeps custom metadata such as our `mdhub` card).
"""
from __future__ import annotations

from typing import Any

import yaml

# a subset of the Hub's license ids (https://huggingface.co/docs/hub/repositories-licenses)
LICENSES = frozenset({
    "apache-2.0", "mit", "openrail", "bigscience-openrail-m", "creativeml-openrail-m", "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m", "afl-3.0", "artistic-2.0", "bsl-1.0", "bsd", "bsd-2-clause", "bsd-3-clause",
    "bsd-3-clause-clear", "c-uda", "cc", "cc0-1.0", "cc-by-2.0", "cc-by-2.5", "cc-by-3.0", "cc-by-4.0",
    "cc-by-sa-3.0", "cc-by-sa-4.0", "cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0", "cc-by-nd-4.0",
    "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0", "cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0", "ecl-2.0",
    "epl-1.0", "epl-2.0", "eupl-1.1", "agpl-3.0", "gfdl", "gpl", "gpl-2.0", "gpl-3.0", "lgpl", "lgpl-2.1",
    "lgpl-3.0", "isc", "lppl-1.3c", "ms-pl", "mpl-2.0", "odc-by", "odbl", "openrail++", "osl-3.0", "postgresql",
    "ofl-1.1", "ncsa", "unlicense", "zlib", "pddl", "lgpl-lr", "deepfloyd-if-license", "llama2", "llama3",
    "llama3.1", "gemma", "unknown", "other",
})
# the Hub's pipeline tags (huggingface.js tasks), the ones next to ours and the common ones
PIPELINE_TAGS = frozenset({
    "reinforcement-learning", "robotics", "tabular-classification", "tabular-regression", "time-series-forecasting",
    "text-classification", "token-classification", "text-generation", "text2text-generation", "fill-mask",
    "question-answering", "summarization", "translation", "feature-extraction", "sentence-similarity",
    "zero-shot-classification", "image-classification", "object-detection", "image-segmentation", "text-to-image",
    "image-to-text", "image-to-image", "unconditional-image-generation", "video-classification",
    "audio-classification", "automatic-speech-recognition", "text-to-speech", "text-to-audio", "depth-estimation",
    "graph-ml", "any-to-any", "other",
})


def _str_list(meta: dict[str, Any], key: str, errors: list[str]) -> None:
    value = meta.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        errors.append(f'"{key}" must be an array of strings')


def _check_model_index(index: Any, errors: list[str]) -> None:
    if not isinstance(index, list):
        errors.append('"model-index" must be an array')
        return
    for i, model in enumerate(index):
        where = f'"model-index[{i}]"'
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f"{where}.name must be a string")
            continue
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f"{where}.results must be an array")
            continue
        for j, res in enumerate(results):
            at = f"{where}.results[{j}]"
            if not isinstance(res, dict):
                errors.append(f"{at} must be an object")
                continue
            task, dataset, metrics = res.get("task"), res.get("dataset"), res.get("metrics")
            if not isinstance(task, dict) or not isinstance(task.get("type"), str):
                errors.append(f"{at}.task.type is required (a string)")
            elif "name" in task and not isinstance(task["name"], str):
                errors.append(f"{at}.task.name must be a string")
            if not isinstance(dataset, dict) or not all(isinstance(dataset.get(k), str) for k in ("type", "name")):
                errors.append(f"{at}.dataset.type and .name are required (strings)")
            else:
                for k in ("config", "split", "revision"):
                    if k in dataset and not isinstance(dataset[k], str):
                        errors.append(f"{at}.dataset.{k} must be a string")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f"{at}.metrics must be a non-empty array")
                continue
            for k, m in enumerate(metrics):
                mat = f"{at}.metrics[{k}]"
                if not isinstance(m, dict) or not isinstance(m.get("type"), str) or m.get("value") is None:
                    errors.append(f"{mat}: type (a string) and value are required")
                    continue
                for key in ("name", "config"):
                    if key in m and not isinstance(m[key], str):
                        errors.append(f"{mat}.{key} must be a string")
                if "verified" in m and not isinstance(m["verified"], bool):
                    errors.append(f"{mat}.verified must be a boolean")
            source = res.get("source")
            if source is not None and not (isinstance(source, dict) and isinstance(source.get("url"), str)):
                errors.append(f"{at}.source.url is required (a string)")


def validate_metadata(meta: Any) -> list[str]:
    """The errors the Hub would report for this front matter (empty: valid)."""
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["the metadata must be a YAML mapping"]
    errors: list[str] = []
    if "library_name" in meta and not isinstance(meta["library_name"], str):
        errors.append('"library_name" must be a string')
    lic = meta.get("license")
    if lic is not None and not (isinstance(lic, str) and lic in LICENSES):
        errors.append(f'"license" must be one of the Hub\'s license ids, not {lic!r}')
    tag = meta.get("pipeline_tag")
    if tag is not None and not (isinstance(tag, str) and tag in PIPELINE_TAGS):
        errors.append(f'"pipeline_tag" must be a known pipeline tag, not {tag!r}')
    _str_list(meta, "tags", errors)
    _str_list(meta, "datasets", errors)
    if "model-index" in meta:
        _check_model_index(meta["model-index"], errors)
    return errors


def front_matter(content: str) -> Any:
    """The YAML between the leading '---' lines of a README (None when there is none)."""
    if not content.startswith("---\n"):
        return None
    end = content.find("\n---\n", 4)
    if end < 0:
        raise ValueError("the metadata block is not closed by '---'")
    return yaml.safe_load(content[4:end + 1])


def validate_readme(payload: dict[str, Any]) -> list[str]:
    """validate-yaml's body: {"content": README text, "repoType": "model"} -> the errors."""
    if payload.get("repoType", "model") not in ("model", None):
        return []  # dataset and space cards follow their own rules, not checked here
    try:
        meta = front_matter(str(payload.get("content", "")))
    except (ValueError, yaml.YAMLError) as err:
        return [f"invalid YAML metadata: {err}"]
    return validate_metadata(meta)
