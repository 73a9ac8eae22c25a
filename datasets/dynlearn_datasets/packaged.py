"""The experiment files shipped with the built-ins (``experiments/*.toml``), loaded with optional overrides.

    >>> from dynlearn_datasets.packaged import packaged_experiment
    >>> packaged_experiment("ghost", {"train": {"epochs": 10}}).config["train"]["epochs"]
    10
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from dynlearn.config import Experiment, resolve_experiment
from dynlearn.errors import ConfigError

__all__ = ["packaged_experiment"]


def packaged_experiment(name: str, overrides: dict[str, Any] | None = None) -> Experiment:
    """Load ``dynlearn_datasets/experiments/<name>.toml``, optionally deep-merging ``overrides``."""
    try:
        text = resources.files(__package__).joinpath("experiments", f"{name}.toml").read_text()
    except FileNotFoundError:
        raise ConfigError(f"no packaged experiment {name!r}") from None
    raw = tomllib.loads(text)
    if overrides:
        raw = _merge(raw, overrides)
    return resolve_experiment(raw, source=f"{name}.toml")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
