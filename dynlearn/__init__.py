"""dynlearn: learning dynamics as dynamical systems.

Train many small models at once, store every epoch as labeled data (xarray in zarr), and analyse the dynamics
they produce: fixed points and ghosts, bifurcations across epochs, basins and separatrices, transverse
stability, Koopman eigenfunctions.

    >>> import dynlearn
    >>> "saddle_node" in dynlearn.registry.names("systems")
    True
"""

from __future__ import annotations

from . import outcome, registry
from ._version import __version__
from .analyzer import Analyzer
from .api import analyze, run_experiment, run_reproduction, train
from .config import Experiment, load_experiment, resolve_experiment
from .errors import (
    ConfigError,
    DynlearnError,
    ParameterError,
    PluginNotFoundError,
    ShapeError,
    StoreError,
)
from .module import ModuleSystem, RateNetwork, from_module, params_from_state_dicts
from .params import Param
from .recorder import Recorder, load_checkpoints
from .progress import set_progress
from .registry import (register_analyzer, register_dataset, register_reproduction, register_schedule,
                       register_system)
from .reproduce import Claim, Reproduction
from .simulate import Trajectory, simulate
from .store import open_store
from .sweep import Batch, flatten, grid
from .plugins import make_analyzer, make_schedule, make_system, make_task
from .system import FlowSystem, Manifold, MapSystem, System, TrainableSystem
from .task import Task
from .train import RunResult


def get_system(name: str) -> type[System]:
    """The System class registered as ``name``."""
    return registry.get("systems", name)


def get_analyzer(name: str) -> type[Analyzer]:
    """The Analyzer class registered as ``name``."""
    return registry.get("analyzers", name)


def get_dataset(name: str) -> type[Task]:
    """The Task (dataset) class registered as ``name``."""
    return registry.get("datasets", name)


__all__ = [
    "__version__",
    "Analyzer",
    "Batch",
    "Claim",
    "ConfigError",
    "DynlearnError",
    "Experiment",
    "FlowSystem",
    "Manifold",
    "MapSystem",
    "ModuleSystem",
    "Param",
    "ParameterError",
    "RateNetwork",
    "Recorder",
    "PluginNotFoundError",
    "Reproduction",
    "RunResult",
    "ShapeError",
    "StoreError",
    "System",
    "Task",
    "TrainableSystem",
    "Trajectory",
    "analyze",
    "flatten",
    "from_module",
    "get_analyzer",
    "get_dataset",
    "get_system",
    "grid",
    "load_checkpoints",
    "load_experiment",
    "make_analyzer",
    "make_system",
    "make_task",
    "make_schedule",
    "register_schedule",
    "open_store",
    "outcome",
    "params_from_state_dicts",
    "register_analyzer",
    "register_dataset",
    "register_reproduction",
    "register_system",
    "registry",
    "resolve_experiment",
    "run_experiment",
    "run_reproduction",
    "set_progress",
    "simulate",
    "train",
]
