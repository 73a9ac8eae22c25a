"""The Task contract (entry-point group ``dynlearn.datasets``): what a trainable system is trained on.

A task is a small object holding its declared parameters (``T``, ``dt``, ...) and whatever tensors the
trainable systems that use it need (time grid, inputs, targets). Tasks are deterministic functions of their
parameters, so a training run can be resumed bit for bit.

    >>> from dynlearn.plugins import make_task
    >>> task = make_task({"name": "delayed_activation", "T": 100.0, "dt": 0.1})
    >>> task.get_params()["T"]
    100.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from .params import Param, init_options, resolve_values

__all__ = ["Task"]


class Task:
    """Base class of tasks / datasets. Subclasses declare ``parameters`` and add what they compute."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    parameters: ClassVar[Mapping[str, Param]] = {}

    def __init__(self, **values: Any) -> None:
        self.values = resolve_values(f"task {self.name or type(self).__name__!r}", self.parameters, values)
        for k, v in self.values.items():
            setattr(self, k, v)

    def get_params(self) -> dict[str, Any]:
        out = dict(init_options(self, Task))
        out.update(self.values)
        return out

    def to_config(self) -> dict[str, Any]:
        return {"name": self.name, **self.get_params()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"
