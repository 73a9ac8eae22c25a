"""Built-in hyper-parameter schedules (entry-point group ``dynlearn.schedules``).

``lower_when_stuck`` lowers a network's output confidence ``c`` once the network is detected stuck in a
no-learning zone — the remedy of the ghost-mechanism paper's Fig. 4::

    [train.schedule]
    name = "lower_when_stuck"
    hyper = "c"           # the hyper-parameter to lower
    value = "c_low"       # new value: a number, or the hyper-parameter holding it per network (sweepable)
    metric = "accuracy"   # per-epoch record watched
    threshold = 0.5       # stuck = metric <= threshold ...
    window = 50           # ... in each of the last 50 epochs
    after = 6000          # lowering allowed from this epoch on

    >>> import torch
    >>> s = LowerWhenStuck(value=1.0, window=2)
    >>> hp = {"c": torch.tensor([10.0, 10.0])}
    >>> st = s.init(hp)
    >>> for e, acc in enumerate([[0.5, 0.9], [0.5, 0.5], [0.5, 1.0]]):
    ...     hp, st = s.step(e, hp, st, {"accuracy": torch.tensor(acc)})
    >>> hp["c"], st["lowered_epoch"]
    (tensor([ 1., 10.]), tensor([ 2, -1]))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dynlearn.errors import ConfigError
from dynlearn.schedule import Schedule

__all__ = ["LowerWhenStuck"]

Tensor = torch.Tensor


class LowerWhenStuck(Schedule):
    """Set ``hyper <- value`` for each network stuck for ``window`` epochs (once per network).

    A network is *stuck* at the end of epoch ``e`` when its record ``metric`` was ``<= threshold`` at each of the
    epochs ``e - window + 1 .. e`` (the paper: training accuracy <= 0.5 over the last 50 epochs). If
    ``e + 1 >= after``, its ``hyper`` takes the new value from epoch ``e + 1`` on. ``value`` is a number, or the
    name of a hyper-parameter giving the value per network (so it can be swept, e.g. ``c_low``).

    State (saved with the resume state, so interrupted runs resume exactly): ``run`` — current run length of
    epochs with ``metric <= threshold``; ``lowered_epoch`` — first epoch run with the new value (-1: not yet).
    """

    name = "lower_when_stuck"
    description = "lower a hyper-parameter (the confidence c) of networks stuck with accuracy <= 0.5 for 50 epochs"

    def __init__(self, hyper: str = "c", value: float | str = "c_low", metric: str = "accuracy",
                 threshold: float = 0.5, window: int = 50, after: int = 0) -> None:
        for nm, v in (("hyper", hyper), ("metric", metric)):
            if not isinstance(v, str) or not v:
                raise ConfigError(f"schedule lower_when_stuck: {nm} must be a name, got {v!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"schedule lower_when_stuck: value must be a number or a hyper-parameter name, got {value!r}")
        if isinstance(value, (int, float)) and not value == value:
            raise ConfigError("schedule lower_when_stuck: value is NaN")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold == threshold:
            raise ConfigError(f"schedule lower_when_stuck: threshold must be a number, got {threshold!r}")
        for nm, v, lo in (("window", window, 1), ("after", after, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"schedule lower_when_stuck: {nm} must be an integer >= {lo}, got {v!r}")
        self.hyper, self.metric = hyper, metric
        self.value = value if isinstance(value, str) else float(value)
        self.threshold, self.window, self.after = float(threshold), int(window), int(after)

    @property
    def changes(self) -> tuple[str, ...]:
        return (self.hyper,)

    def get_params(self) -> dict[str, Any]:
        return {"hyper": self.hyper, "value": self.value, "metric": self.metric, "threshold": self.threshold,
                "window": self.window, "after": self.after}

    def validate(self, hyper_names: set[str]) -> None:
        super().validate(hyper_names)
        if isinstance(self.value, str) and self.value not in hyper_names:
            raise ConfigError(f"schedule lower_when_stuck: value {self.value!r} is not a hyper-parameter of this "
                              f"system ({', '.join(sorted(hyper_names))})")

    def init(self, hp: Mapping[str, Tensor]) -> dict[str, Tensor]:
        some = hp[self.hyper]
        return {"run": torch.zeros(some.shape[0], dtype=torch.int64, device=some.device),
                "lowered_epoch": torch.full((some.shape[0],), -1, dtype=torch.int64, device=some.device)}

    def step(self, epoch: int, hp: dict[str, Tensor], state: dict[str, Tensor], record: Mapping[str, Tensor]):
        if self.metric not in record:
            raise ConfigError(f"schedule lower_when_stuck watches {self.metric!r}, which this system does not record "
                              f"(records: {', '.join(sorted(k for k in record if k != 'status'))})")
        low = record[self.metric] <= self.threshold
        run = torch.where(low, state["run"] + 1, torch.zeros_like(state["run"]))
        lowered = state["lowered_epoch"]
        if epoch + 1 < self.after:
            return hp, {"run": run, "lowered_epoch": lowered}
        trigger = (run >= self.window) & (lowered < 0)
        hp = dict(hp)
        cur = hp[self.hyper]
        new = hp[self.value] if isinstance(self.value, str) else torch.full_like(cur, self.value)
        hp[self.hyper] = torch.where(trigger, new.to(cur.dtype), cur)
        lowered = torch.where(trigger, torch.full_like(lowered, epoch + 1), lowered)
        return hp, {"run": run, "lowered_epoch": lowered}
