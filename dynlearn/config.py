"""Experiment files (TOML): read, validate, resolve (defaults filled in) and hash.

An experiment file::

    name = "ghost-fig2"
    description = "saddle-node toy model, GD over a sweep of learning rates"

    [system]                  # a trainable system plugin and its options
    name = "saddle_node"
    form = "analytic"         # its options (here: closed-form loss of the limit c, x* -> inf)

    [task]                    # the dataset plugin it trains on (default: the system's own)
    name = "delayed_activation"
    T = 100.0

    [train]
    epochs = 20000
    seeds = 10                # or a list of seeds
    optimizer = "sgd"         # sgd | momentum | adam (options in [train.optimizer_options])
    dtype = "float64"
    chunk = 1000              # epochs per store write (also the unit of resumption)
    checkpoint_every = 1      # parameter checkpoint every k epochs

    [sweep]                   # hyper-parameters swept as tensor dims
    lr = { logspace = [-10.5, -8.5], num = 30 }

    [hyper]                   # fixed hyper-parameters
    # c = 10.0

    [[analyze]]               # analyzers run on the stored run afterwards
    name = "fixed_points"
    epochs = "::1000"         # which stored epochs (default: all; see dynlearn.epochs)

Every problem is reported as one :class:`~dynlearn.errors.ConfigError` line naming the key.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DynlearnError, PathError
from .params import check_names
from .provenance import config_hash
from .safety import RUN_GROUPS, check_name

__all__ = ["Experiment", "load_experiment", "resolve_experiment", "config_hash"]

TOP_KEYS = {"name", "description", "system", "task", "train", "sweep", "hyper", "analyze"}
TRAIN_KEYS = {
    "epochs": int,
    "seeds": (int, list),
    "optimizer": str,
    "optimizer_options": dict,
    "dtype": str,
    "chunk": (int, str),
    "checkpoint_every": int,
    "max_norm": (int, float),
    "device": str,
    "schedule": dict,
    "threads": int,
}
TRAIN_DEFAULTS: dict[str, Any] = {
    "seeds": 1,
    "optimizer": "sgd",
    "optimizer_options": {},
    "dtype": "float64",
    "chunk": "auto",
    "checkpoint_every": 1,
    "max_norm": 1e8,
    "device": "cpu",
    "schedule": {},
    "threads": 1,
}


@dataclass
class Experiment:
    """A resolved experiment: the JSON-able config, its hash, and the objects it describes."""

    config: dict[str, Any]
    hash: str

    @property
    def epochs(self) -> int:
        return int(self.config["train"]["epochs"])

    def trainable(self):
        from .registry import get
        from .plugins import make_system
        from .system import TrainableSystem

        sys_cfg = dict(self.config["system"])
        if not issubclass(get("systems", sys_cfg.get("name", "")), TrainableSystem):
            raise ConfigError(f"system {sys_cfg['name']!r} is not trainable (it has no loss); pick a trainable system")
        if self.config.get("task"):
            sys_cfg["task"] = self.config["task"]
        return make_system(sys_cfg)


def load_experiment(path: str | Path) -> Experiment:
    """Read and resolve an experiment file."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"experiment file {p} does not exist")
    if not p.is_file():
        raise ConfigError(f"experiment file {p} is not a file")
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: malformed TOML: {' '.join(str(exc).split())}") from None
    return resolve_experiment(raw, source=str(p))


def _safe_name(source: str, name: Any, what: str) -> None:
    try:
        check_name(name, what)
    except PathError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _type_name(v: Any) -> str:
    return type(v).__name__


def _expect(where: str, value: Any, types: Any) -> None:
    types = types if isinstance(types, tuple) else (types,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if int in types and float not in types and isinstance(value, float):
        ok = False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        want = " or ".join({"int": "an integer", "float": "a number", "str": "a string", "list": "a list",
                            "dict": "a table"}[t.__name__] for t in types)
        raise ConfigError(f"{where} must be {want}, got {value!r} ({_type_name(value)})")


def _axis(name: str, spec: Any) -> list[float]:
    where = f"sweep.{name}"
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(f"{where} is an empty list")
        for v in spec:
            _expect(where, v, (int, float))
        values = [float(v) for v in spec]
    elif isinstance(spec, Mapping):
        keys = set(spec)
        kinds = keys & {"logspace", "linspace", "values"}
        if len(kinds) != 1:
            raise ConfigError(f"{where} must be a list or a table with one of logspace / linspace / values")
        kind = kinds.pop()
        extra = keys - {kind, "num"}
        if extra:
            raise ConfigError(f"{where} has unknown key {sorted(extra)[0]!r}")
        if kind == "values":
            return _axis(name, spec["values"])
        bounds, num = spec[kind], spec.get("num")
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise ConfigError(f"{where}.{kind} must be [start, stop]")
        for b in bounds:
            _expect(f"{where}.{kind}", b, (int, float))
        _expect(f"{where}.num", num, int)
        if num < 1:
            raise ConfigError(f"{where}.num must be >= 1, got {num}")
        fn = np.logspace if kind == "logspace" else np.linspace
        values = [float(v) for v in fn(bounds[0], bounds[1], num)]
    else:
        raise ConfigError(f"{where} must be a list of numbers or a table, got {spec!r} ({_type_name(spec)})")
    if any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{where} contains a non-finite value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{where} contains repeated values")
    return values


def _auto_chunk(epochs: int) -> int:
    return int(min(epochs, max(100, min(5000, -(-epochs // 10)))))


def resolve_experiment(raw: Mapping[str, Any], *, source: str = "experiment") -> Experiment:
    """Validate a raw experiment mapping and fill in every default (system, task, optimizer, hyper)."""
    from .optim import make_optimizer
    from .plugins import make_schedule

    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: an experiment must be a table")
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(TOP_KEYS))}")
    name = raw.get("name", Path(source).stem)
    _expect("name", name, str)
    _safe_name(source, name, "experiment name (the 'name' key, or the file's stem)")
    description = raw.get("description", "")
    _expect("description", description, str)

    system_raw = raw.get("system")
    if system_raw is None:
        raise ConfigError(f"{source}: missing [system] table")
    _expect("system", system_raw, dict)
    if "name" not in system_raw:
        raise ConfigError("system.name is missing (which system to train?)")
    _expect("system.name", system_raw["name"], str)
    task_raw = raw.get("task", {})
    _expect("task", task_raw, dict)

    train_raw = raw.get("train")
    if train_raw is None:
        raise ConfigError(f"{source}: missing [train] table")
    _expect("train", train_raw, dict)
    unknown = set(train_raw) - set(TRAIN_KEYS)
    if unknown:
        raise ConfigError(f"train has unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(TRAIN_KEYS))}")
    if "epochs" not in train_raw:
        raise ConfigError("train.epochs is missing")
    for k, v in train_raw.items():
        _expect(f"train.{k}", v, TRAIN_KEYS[k])
    train = {**TRAIN_DEFAULTS, **train_raw}
    if train["epochs"] < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {train['epochs']}")
    seeds = train["seeds"]
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError(f"train.seeds must be >= 1, got {seeds}")
        seeds = list(range(seeds))
    else:
        for s in seeds:
            _expect("train.seeds[]", s, int)
        if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ConfigError("train.seeds must be distinct non-negative integers")
    train["seeds"] = seeds
    if train["dtype"] not in ("float32", "float64"):
        raise ConfigError(f"train.dtype must be 'float32' or 'float64', got {train['dtype']!r}")
    if train["chunk"] == "auto":
        train["chunk"] = _auto_chunk(train["epochs"])
    elif isinstance(train["chunk"], str):
        raise ConfigError(f"train.chunk must be a positive integer or 'auto', got {train['chunk']!r}")
    if train["chunk"] < 1:
        raise ConfigError(f"train.chunk must be >= 1, got {train['chunk']}")
    train["chunk"] = min(train["chunk"], train["epochs"])
    k = train["checkpoint_every"]
    if k < 1 or train["chunk"] % k:
        raise ConfigError(f"train.checkpoint_every must be >= 1 and divide train.chunk ({train['chunk']}), got {k}")
    if train["threads"] < 0:
        raise ConfigError(f"train.threads must be >= 0 (0: torch's default), got {train['threads']}")
    if not train["max_norm"] > 0:
        raise ConfigError(f"train.max_norm must be > 0, got {train['max_norm']}")
    train["max_norm"] = float(train["max_norm"])
    opt = make_optimizer(train["optimizer"], **train["optimizer_options"])
    train["optimizer_options"] = opt.get_params()

    # build the system (validates its options, parameters and task)
    exp = Experiment(
        config={"name": name, "description": description, "system": dict(system_raw), "task": dict(task_raw)},
        hash="",
    )
    try:
        trainable = exp.trainable()
    except DynlearnError as exc:
        raise ConfigError(str(exc)) from None
    sys_cfg = trainable.get_params()
    task_cfg = sys_cfg.pop("task", {}) or {}
    hyper_decl = trainable.hyper

    sweep_raw = raw.get("sweep", {})
    _expect("sweep", sweep_raw, dict)
    hyper_raw = raw.get("hyper", {})
    _expect("hyper", hyper_raw, dict)
    owner = f"system {trainable.name!r}"
    check_names(sweep_raw, hyper_decl, owner=owner, what="hyper-parameter", key="sweep")
    check_names(hyper_raw, hyper_decl, owner=owner, what="hyper-parameter", key="hyper")
    sweep = {hname: _axis(hname, spec) for hname, spec in sweep_raw.items()}
    hyper = {}
    for hname, decl in hyper_decl.items():
        if hname in hyper_raw and hname in sweep:
            raise ConfigError(f"hyper.{hname} is also swept in [sweep]; give it in one place")
        if hname in sweep:
            values = sweep[hname]
        else:
            v = hyper_raw.get(hname, decl.default)
            if v is None:
                raise ConfigError(f"hyper.{hname} is required ({decl.description})")
            _expect(f"hyper.{hname}", v, (int, float))
            hyper[hname] = float(v)
            values = [float(v)]
        from .params import check_value
        from .errors import ParameterError

        try:
            check_value(hname, np.asarray(values), decl)
        except ParameterError as exc:
            raise ConfigError(f"{'sweep' if hname in sweep else 'hyper'}.{hname}: {exc}") from None
    schedule = make_schedule(train["schedule"])
    if schedule is not None:
        schedule.validate(set(hyper_decl))
        train["schedule"] = schedule.to_config()

    analyze = raw.get("analyze", [])
    _expect("analyze", analyze, list)
    for i, a in enumerate(analyze):
        _expect(f"analyze[{i}]", a, dict)
        if "name" not in a:
            raise ConfigError(f"analyze[{i}] needs a name")
        from .registry import get

        try:
            get("analyzers", a["name"])
        except DynlearnError as exc:
            raise ConfigError(f"analyze[{i}]: {exc}") from None
        group = a.get("group", a["name"])
        _safe_name(source, group, f"analyze[{i}].group")
        if group in RUN_GROUPS:
            raise ConfigError(f"{source}: analyze[{i}].group {group!r} belongs to the run; choose another name")
        if "epochs" in a:  # checked against the checkpoints the run will store, before any training
            from .epochs import select_epochs

            try:
                select_epochs(np.arange(0, train["epochs"], train["checkpoint_every"]), a["epochs"])
            except DynlearnError as exc:
                raise ConfigError(f"analyze[{i}].{exc}") from None

    config = {
        "name": name,
        "description": description,
        "system": {"name": trainable.name, **sys_cfg},
        "task": task_cfg,
        "train": train,
        "sweep": sweep,
        "hyper": hyper,
        "analyze": [dict(a) for a in analyze],
    }
    try:
        h = config_hash(config)
    except ValueError as exc:
        raise ConfigError(f"{source}: config has a non-finite number ({exc})") from None
    return Experiment(config=config, hash=h)
