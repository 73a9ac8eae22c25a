"""Which stored epochs of a training run an analyzer studies: one selection for every way an analyzer runs.

An epoch selection is the ``epochs`` argument of :meth:`dynlearn.Analyzer.run` and :func:`dynlearn.analyze`,
the ``epochs`` key of an experiment's ``[[analyze]]`` step and ``--epochs`` of ``dynlearn analyze``. It is
applied in one place, :func:`dynlearn.api.resolve_target`, to the run's stored parameter checkpoints:

==============================  ===========================================================================
selection                       epochs analysed
==============================  ===========================================================================
``None`` or ``"all"``           every stored epoch (the default)
``"last"``                      the last stored epoch
``4000`` or ``[0, 2000, 4999]`` exactly those (each must be stored; the CLI also takes ``0,2000,4999``)
``"100:500"``                   stored epochs ``100 <= e < 500`` (Python slice syntax over epoch numbers)
``"::500"``                     every 500th epoch from the first stored one: 0, 500, 1000, ... (those stored)
``"1000::100"``                 1000, 1100, ... up to the last stored epoch
``{"every": 500}``              the same as ``"::500"`` (optional ``start`` and ``stop``, as in a slice)
==============================  ===========================================================================

An epoch a list names that the run did not store, or a selection that matches no stored epoch, is one
:class:`~dynlearn.errors.ParameterError` naming the epochs the run stores::

    >>> import numpy as np
    >>> stored = np.arange(0, 5000, 5)           # checkpoint_every = 5
    >>> select_epochs(stored, "::1000").tolist()
    [0, 1000, 2000, 3000, 4000]
    >>> select_epochs(stored, {"every": 1000, "start": 500}).tolist()
    [500, 1500, 2500, 3500, 4500]
    >>> select_epochs(stored, "last").tolist()
    [4995]
    >>> select_epochs(stored, [0, 12])
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: epochs: epoch 12 is not stored; the run stores epochs 0, 5, ..., 4995 (every 5)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ParameterError
from .params import check_names

__all__ = ["EpochSelection", "parse_epochs", "select_epochs", "describe_epochs"]


@dataclass(frozen=True)
class EpochSelection:
    """A parsed epoch selection.

    Attributes
    ----------
    kind
        ``"all"``, ``"last"``, ``"list"`` or ``"slice"``.
    epochs
        The epochs of a ``"list"`` selection.
    start, stop, step
        The bounds of a ``"slice"`` selection over epoch numbers (``None``: open), ``step >= 1``.
    """

    kind: str
    epochs: tuple[int, ...] = ()
    start: int | None = None
    stop: int | None = None
    step: int = 1

    def to_config(self) -> Any:
        """The selection as plain data (JSON, TOML): ``"all"``, ``"last"``, a list or a slice string."""
        if self.kind == "list":
            return list(self.epochs)
        if self.kind == "slice":
            start = "" if self.start is None else self.start
            stop = "" if self.stop is None else self.stop
            return f"{start}:{stop}" + (f":{self.step}" if self.step != 1 else "")
        return self.kind


def _epoch(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise ParameterError(f"epochs: {what} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ParameterError(f"epochs: {what} must be a non-negative integer (use 'last' for the last epoch), "
                             f"got {value!r}")
    return int(value)


def _slice(start: Any, stop: Any, step: Any) -> EpochSelection:
    start = None if start in (None, "") else _epoch(start, "a slice start")
    stop = None if stop in (None, "") else _epoch(stop, "a slice stop")
    step = 1 if step in (None, "") else _epoch(step, "a step")
    if step < 1:
        raise ParameterError("epochs: a step must be >= 1, got 0")
    return EpochSelection("slice", start=start, stop=stop, step=step)


def parse_epochs(spec: Any) -> EpochSelection:
    """Parse an epoch selection (the forms of the module's table); :class:`ParameterError` if malformed.

    Parameters
    ----------
    spec
        ``None``, ``"all"``, ``"last"``, an epoch, a list of epochs, a slice string ``"start:stop:step"``, a
        ``{"every", "start", "stop"}`` mapping, a :class:`slice` or :class:`range`; a string may also be a
        comma-separated list of epochs or JSON (what ``--epochs`` passes on).

    Returns
    -------
    EpochSelection
        The selection, checked without any run.

    Examples
    --------
    >>> parse_epochs("100:500").to_config(), parse_epochs({"every": 10}).to_config(), parse_epochs("3,7").to_config()
    ('100:500', '::10', [3, 7])
    >>> parse_epochs("every 10")
    Traceback (most recent call last):
    ...
    dynlearn.errors.ParameterError: epochs: ... got 'every 10'
    """
    if isinstance(spec, EpochSelection):
        return spec
    if spec is None:
        return EpochSelection("all")
    if isinstance(spec, str):
        text = spec.strip()
        if text in ("all", "last"):
            return EpochSelection(text)
        if text[:1] in "[{":
            try:
                return parse_epochs(json.loads(text))
            except json.JSONDecodeError:
                pass
        elif ":" in text and text.count(":") <= 2:
            return _slice(*(p.strip() for p in (text.split(":") + [""])[:3]))
        elif text.replace(",", " ").replace(" ", "").isdigit():
            return EpochSelection("list", epochs=tuple(int(p) for p in text.replace(",", " ").split()))
        raise ParameterError(
            f"epochs: expected 'all', 'last', an epoch, a list of epochs, a slice 'start:stop:step' such as '::10' "
            f"or '100:500', or {{\"every\": k}}; got {spec!r}")
    if isinstance(spec, slice):
        return _slice(spec.start, spec.stop, spec.step)
    if isinstance(spec, range):
        return _slice(spec.start, spec.stop, spec.step)
    if isinstance(spec, Mapping):
        check_names(spec, ["every", "start", "stop"], owner="an epoch selection", what="key", key="epochs")
        return _slice(spec.get("start"), spec.get("stop"), spec.get("every"))
    if isinstance(spec, (Sequence, np.ndarray)):
        epochs = tuple(_epoch(e, "an epoch") for e in spec)
        if not epochs:
            raise ParameterError("epochs: the list of epochs is empty")
        return EpochSelection("list", epochs=epochs)
    return EpochSelection("list", epochs=(_epoch(spec, "an epoch"),))


def describe_epochs(stored: np.ndarray) -> str:
    """The stored epochs in a few words: ``"0-4999"``, ``"0, 5, ..., 4995 (every 5)"`` or a short list."""
    stored = np.asarray(stored)
    if stored.size == 0:
        return "no epochs"
    if stored.size <= 6:
        return ", ".join(str(int(e)) for e in stored)
    steps = np.unique(np.diff(stored))
    if steps.size == 1 and steps[0] == 1:
        return f"{int(stored[0])}-{int(stored[-1])}"
    if steps.size == 1:
        return f"{int(stored[0])}, {int(stored[1])}, ..., {int(stored[-1])} (every {int(steps[0])})"
    return f"{stored.size} epochs from {int(stored[0])} to {int(stored[-1])}"


def select_epochs(stored: Sequence[int] | np.ndarray, spec: Any) -> np.ndarray:
    """The stored epochs a selection picks, in stored order.

    Parameters
    ----------
    stored
        The epochs the run stores (its ``epoch`` coordinate).
    spec
        An epoch selection (:func:`parse_epochs`).

    Returns
    -------
    numpy.ndarray
        The selected epochs (a subset of ``stored``, never empty).

    Raises
    ------
    ParameterError
        An epoch of a list is not stored, or nothing stored matches; the message names the stored epochs.
    """
    stored = np.asarray(stored)
    sel = parse_epochs(spec)
    where = f"the run stores epochs {describe_epochs(stored)}"
    if sel.kind == "all":
        return stored
    if stored.size == 0:
        raise ParameterError(f"epochs: {where}")
    if sel.kind == "last":
        return stored[-1:]
    if sel.kind == "list":
        missing = [e for e in sel.epochs if e not in set(stored.tolist())]
        if missing:
            raise ParameterError(f"epochs: epoch {missing[0]} is not stored; {where}")
        return np.asarray(sel.epochs, dtype=stored.dtype)
    start = int(stored[0]) if sel.start is None else sel.start
    keep = (stored >= start) & ((stored - start) % sel.step == 0)
    if sel.stop is not None:
        keep &= stored < sel.stop
    if not keep.any():
        raise ParameterError(f"epochs: {sel.to_config()!r} selects no stored epoch; {where}")
    return stored[keep]
