"""Point types from Jacobian eigenvalues (private helper of the fixed-point analyzer).

Flows use the real parts of the eigenvalues of ``df/dx`` (stable ``< 0``), maps their moduli (stable ``< 1``);
an eigenvalue within ``tol`` of the boundary is *neutral*.

    >>> import torch
    >>> ev = torch.tensor([[complex(-1, 2), complex(-1, -2)], [complex(1, 0), complex(-3, 0)]])
    >>> [TYPES[c] for c in classify(ev, "flow", 1e-9).tolist()]
    ['stable_focus', 'saddle']
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor

#: point type codes (``-1``: no point, padding)
TYPES = (
    "stable_node",
    "unstable_node",
    "saddle",
    "stable_focus",
    "unstable_focus",
    "centre",
    "non_hyperbolic",
    "ghost",
    "slow_point",
)
CODE = {name: i for i, name in enumerate(TYPES)}
NONE = -1
FIXED_CODES = tuple(range(7))


def flag_attrs(long_name: str = "type of the point") -> dict:
    """CF flag attrs decoding the point type codes."""
    return {
        "long_name": long_name,
        "flag_values": [NONE, *range(len(TYPES))],
        "flag_meanings": " ".join(("none", *TYPES)),
        "units": "1",
    }


def margins(ev: Tensor, kind: str) -> Tensor:
    """Stability margin of each eigenvalue: ``Re lambda`` (flows) or ``|lambda| - 1`` (maps); > 0 is unstable."""
    return ev.real if kind == "flow" else ev.abs() - 1


def eig_order(ev: Tensor, kind: str) -> Tensor:
    """Indices sorting eigenvalues by decreasing margin (leading, most unstable first), ties by imaginary part
    (of a conjugate pair, ``+imag`` first)."""
    first = torch.argsort(-ev.imag.nan_to_num(-torch.inf), dim=-1, stable=True)
    order = torch.argsort(-margins(ev.gather(-1, first), kind).nan_to_num(-torch.inf), dim=-1, stable=True)
    return first.gather(-1, order)


def sort_eigs(ev: Tensor, kind: str) -> Tensor:
    """Eigenvalues sorted by :func:`eig_order`."""
    return ev.gather(-1, eig_order(ev, kind))


def counts(ev: Tensor, kind: str, tol: float) -> tuple[Tensor, Tensor]:
    """Numbers of unstable and neutral eigenvalues (``tol`` relative to ``max(1, max |lambda|)``)."""
    m = margins(ev, kind)
    scale = ev.abs().amax(-1, keepdim=True).clamp(min=1.0)
    neutral = m.abs() <= tol * scale
    unstable = (m > 0) & ~neutral
    return unstable.sum(-1), neutral.sum(-1)


def classify(ev: Tensor, kind: str, tol: float) -> Tensor:
    """Type code (see :data:`TYPES`) of fixed points with eigenvalues ``ev`` ``(..., d)``."""
    d = ev.shape[-1]
    n_unst, n_neut = counts(ev, kind, tol)
    scale = ev.abs().amax(-1, keepdim=True).clamp(min=1.0)
    complex_ = (ev.imag.abs() > tol * scale).any(-1)
    m = margins(ev, kind)
    neutral = m.abs() <= tol * scale
    neutral_real = (neutral & (ev.imag.abs() <= tol * scale)).any(-1)
    code = torch.full(ev.shape[:-1], CODE["saddle"], dtype=torch.int64, device=ev.device)
    stable = n_unst == 0
    unstable = n_unst == d
    code = torch.where(stable & complex_, CODE["stable_focus"], torch.where(stable, CODE["stable_node"], code))
    code = torch.where(unstable & complex_, CODE["unstable_focus"], torch.where(unstable, CODE["unstable_node"], code))
    centre = (n_neut > 0) & ~neutral_real & (n_unst == 0)
    code = torch.where(n_neut > 0, torch.where(centre, CODE["centre"], CODE["non_hyperbolic"]), code)
    return code
