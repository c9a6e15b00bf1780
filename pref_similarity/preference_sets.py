"""The preference sets of the study: the core normaliser (`common.preference_data`, which lists the
formats) plus the paper's hub defaults, so `--dataset <hub id>` alone loads what the paper used.

A row keeps its position in the loaded split as its `index`: the similarity file and the quantile
runs name examples by it. Rows are checked as they are normalised, so an error names the row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from common.errors import DataError
from common.preference_data import FORMATS, load_preference_rows  # noqa: F401  (FORMATS: the flag choices)

# Split and hub config of the paper's datasets.
HUB_DEFAULTS = {
    "HuggingFaceH4/ultrafeedback_binarized": {"split": "train_prefs", "config_name": ""},
    "tatsu-lab/alpaca_farm": {"split": "preference", "config_name": "alpaca_human_preference"},
}


@dataclass
class PreferenceSet:
    source: str
    format: str  # the resolved format, never "auto"
    split: str
    config_name: str
    rows: list[dict]  # {"prompt", "chosen", "rejected"}; list position = example index


def load_preference_set(source: str, *, format: str = "auto", split: str = "", config_name: str = "",
                        format_field: str = "dataset_format") -> PreferenceSet:
    """Load and normalise a preference set from a local file/dir or the hub.

    An empty `split` / `config_name` means the paper's choice for the two known hub datasets
    (`HUB_DEFAULTS`) and split "train" otherwise (a local file has no splits).
    """
    defaults = HUB_DEFAULTS.get(source, {"split": "train", "config_name": ""})
    split = split or defaults["split"]
    config_name = config_name or defaults["config_name"]
    rows, resolved = load_preference_rows(source, format=format, split=split, config_name=config_name,
                                          format_field=format_field)
    if rows[0]["rejected"] is None:
        raise DataError(f"{source}: {resolved} rows have no rejected response; the similarities need pairs")
    return PreferenceSet(source, resolved, split, config_name, rows)


def dataset_identity(source: str) -> str:
    """What a similarity file records about its dataset: the absolute path of a local one, else the hub id."""
    path = Path(os.path.expanduser(source))
    return str(path.resolve()) if path.exists() else source
