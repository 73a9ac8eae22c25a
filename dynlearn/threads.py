"""torch intra-op threads for a block of work (training and analyzers of many small tensors)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None`` or 0: leave the setting as it is); restore after.

    Batches of small per-network tensors gain nothing from intra-op threads, and on a busy machine they cost a
    lot, so training (``train.threads``) and some analyzers default to one.

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
