"""Hyper-parameter schedules: change hyper-parameters per network during training, from what they observe.

A schedule keeps its own state tensors (saved with the resume state, so interrupted runs resume exactly) and
lists in ``changes`` the hyper-parameters it modifies (recorded per epoch in ``/train``). Schedules are plugins
(entry-point group ``dynlearn.schedules``, or ``dynlearn.register_schedule`` in a session), built from an
experiment's ``[train.schedule]`` table by :func:`dynlearn.plugins.make_schedule`.

    >>> import torch
    >>> from dynlearn.plugins import make_schedule
    >>> s = make_schedule({"name": "step", "hyper": "c", "epoch": 2, "value": 1.0})
    >>> hp = {"c": torch.tensor([10.0, 10.0])}
    >>> st = s.init(hp)
    >>> for e in range(3):
    ...     hp, st = s.step(e, hp, st, {})
    >>> hp["c"]
    tensor([1., 1.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from .errors import ConfigError

__all__ = ["Schedule", "StepSchedule"]

Tensor = torch.Tensor


class Schedule:
    """Base class. ``step`` is called after every epoch's update with that epoch's records."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @property
    def changes(self) -> tuple[str, ...]:
        return ()

    def get_params(self) -> dict[str, Any]:
        return {}

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_params()}

    def validate(self, hyper_names: set[str]) -> None:
        for h in self.changes:
            if h not in hyper_names:
                raise ConfigError(f"schedule {self.name!r} changes {h!r}, which is not a hyper-parameter "
                                  f"of this system ({', '.join(sorted(hyper_names))})")

    def init(self, hp: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {}

    def step(self, epoch: int, hp: dict[str, Tensor], state: dict[str, Tensor], record: Mapping[str, Tensor]):
        return hp, state


class StepSchedule(Schedule):
    """Set hyper-parameter ``hyper`` to ``value`` for every network from ``epoch`` on."""

    name = "step"
    description = "set a hyper-parameter to a new value at a given epoch"

    def __init__(self, hyper: str, epoch: int, value: float) -> None:
        self.hyper, self.epoch, self.value = hyper, int(epoch), float(value)

    @property
    def changes(self):
        return (self.hyper,)

    def get_params(self):
        return {"hyper": self.hyper, "epoch": self.epoch, "value": self.value}

    def step(self, epoch, hp, state, record):
        if epoch + 1 >= self.epoch:
            hp = dict(hp)
            hp[self.hyper] = torch.full_like(hp[self.hyper], self.value)
        return hp, state
