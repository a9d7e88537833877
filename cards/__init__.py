"""What a module IS, as data: pydantic card models, format versions, Hugging Face model-card rendering. No torch."""
from cards.card import (
    FORMAT_VERSION,
    DatasetRef,
    DiffusionSpec,
    EvalRecord,
    FileEntry,
    GuidanceSpec,
    HubSource,
    Interface,
    ModuleCard,
    ModuleRef,
    Origin,
    PolicySpec,
    RewardTransform,
    ValueStats,
    best_evaluation,
    merge_evaluations,
)
from cards.errors import CardError
from cards.io import card_from_dict, card_from_json, card_json_schema, card_to_json
from cards.readme import card_from_readme, card_to_readme

__all__ = [
    "FORMAT_VERSION", "CardError", "DatasetRef", "DiffusionSpec", "EvalRecord", "FileEntry", "GuidanceSpec",
    "HubSource", "Interface", "ModuleCard", "ModuleRef", "Origin", "PolicySpec", "RewardTransform", "ValueStats",
    "best_evaluation", "card_from_dict", "card_from_json", "card_from_readme", "card_json_schema", "card_to_json",
    "card_to_readme", "merge_evaluations",
]
