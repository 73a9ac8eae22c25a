"""torch intra-op threads: a block of work (:func:`torch_threads`) and the analyzers' policy (:func:`analyzer_threads`).

Analyzers run thousands of small batched operations (Newton steps of a few hundred states, 2-D flows of ten
thousand samples). Each parallel torch operation ends at an OpenMP barrier; when another process holds one of
the cores, a thread of the pool is descheduled and every barrier waits for it, so two threads on a busy 2-core
machine ran ``fixed_points`` on a 100-neuron RNN 25x slower than one thread. Threads pay off only for tensors
large enough that one operation outlasts such a wait, so :func:`analyzer_threads` gives one thread per
:data:`NUMBERS_PER_THREAD` numbers of the analyzer's state tensor, unless the user asked for a number
(the analyzer's ``threads`` option, or process-wide :func:`set_analyzer_threads`, which ``dynlearn --threads N``
calls).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import ParameterError

__all__ = ["torch_threads", "analyzer_threads", "set_analyzer_threads", "NUMBERS_PER_THREAD"]

#: size of an analyzer's state tensor (numbers) per intra-op thread of the automatic choice
NUMBERS_PER_THREAD = 1 << 20

_requested: int | None = None  # process-wide choice (``dynlearn --threads N``); None: automatic


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None`` or 0: leave the setting as it is); restore after.

    Batches of small per-network tensors gain nothing from intra-op threads, and on a busy machine they cost a
    lot, so training (``train.threads``) defaults to one and analyzers choose with :func:`analyzer_threads`.

    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    saved = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _checked(n: object, what: str) -> int | None:
    """``n`` as a thread count: ``None`` or 0 mean automatic; anything but a non-negative integer is an error."""
    if n is None:
        return None
    if isinstance(n, bool) or not hasattr(n, "__index__"):  # int and numpy integers
        raise ParameterError(f"{what} must be a positive integer or None (automatic), got {n!r}")
    n = int(n.__index__())  # type: ignore[attr-defined]
    if n < 0:
        raise ParameterError(f"{what} must be a positive integer or None (automatic), got {n}")
    return n or None


def set_analyzer_threads(n: int | None) -> None:
    """Threads for every analyzer whose own ``threads`` option is ``None`` (``None`` or 0: automatic again).

    ``dynlearn --threads N`` calls it; an analyzer's ``threads`` option still wins.
    """
    global _requested
    _requested = _checked(n, "threads")


def analyzer_threads(work_size: int, requested: int | None = None) -> int:
    """Torch intra-op threads for an analyzer whose state tensor holds ``work_size`` numbers.

    Parameters
    ----------
    work_size
        Numbers in the tensor the analyzer advances (e.g. sweep elements x states x state dim): the size of a
        typical operation. See :meth:`dynlearn.Analyzer.work_size`.
    requested
        The analyzer's ``threads`` option. ``None`` or 0: the process-wide choice of :func:`set_analyzer_threads`
        if any, else automatic: one thread per :data:`NUMBERS_PER_THREAD` numbers, at least 1 and at most
        torch's current setting (``torch.get_num_threads()``).

    Returns
    -------
    int
        The thread count, for :func:`torch_threads`.

    Examples
    --------
    >>> analyzer_threads(100 * 64)        # 64 states of a 100-neuron network: small batched linear algebra
    1
    >>> analyzer_threads(100 * 64, requested=2)
    2
    """
    n = _checked(requested, "threads") or _requested
    if n:
        return n
    return max(1, min(torch.get_num_threads(), int(work_size) // NUMBERS_PER_THREAD))
