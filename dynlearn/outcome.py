"""Per-element outcomes: failures are data, not exceptions. One vocabulary for every analyzer.

Batched runs (training many networks, iterating many initial states, fitting one model per sweep element)
record one outcome per element instead of failing the batch on the first bad one. Stored as small integer codes
with CF ``flag_values`` / ``flag_meanings`` attrs, or as labels (``dtype=object`` strings) via :func:`labels`.

=====  ======================  =========================================================================
code   label                   meaning
=====  ======================  =========================================================================
0      ``ok``                  the element's result is valid
1      ``diverged``            its state left the ball ``|x|_inf <= max_norm`` (or a region), or is infinite
2      ``nan``                 its state or result turned NaN while bounded
3      ``max_steps``           the step budget ran out before the element finished
4      ``not_converged``       an iteration (root finding, path relaxation, fit) did not reach its tolerance
5      ``unresolved``          the evidence does not decide (an orbit's tail has not settled, a point is
                               not assigned)
6      ``single_attractor``    a two-attractor method found only one attractor
7      ``invalid_parameters``  the element's parameters are outside the method's domain
8      ``masked``              not computed (e.g. a network that diverged during training)
=====  ======================  =========================================================================

    >>> import numpy as np
    >>> labels(np.array([0, 1, 2])).tolist()
    ['ok', 'diverged', 'nan']
    >>> flag_attrs("outcome of the fit")["flag_meanings"].split()[6]
    'single_attractor'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

__all__ = ["OK", "DIVERGED", "NAN", "MAX_STEPS", "NOT_CONVERGED", "UNRESOLVED", "SINGLE_ATTRACTOR",
           "INVALID_PARAMETERS", "MASKED", "NAMES", "code", "classify", "labels", "flag_attrs", "as_labels"]

NAMES = ("ok", "diverged", "nan", "max_steps", "not_converged", "unresolved", "single_attractor",
         "invalid_parameters", "masked")
OK, DIVERGED, NAN, MAX_STEPS, NOT_CONVERGED, UNRESOLVED, SINGLE_ATTRACTOR, INVALID_PARAMETERS, MASKED = range(9)


def code(label: str) -> int:
    """The code of an outcome label (a ``KeyError``-free lookup with a clear error)."""
    try:
        return NAMES.index(label)
    except ValueError:
        raise ValueError(f"unknown outcome {label!r}; outcomes are: {', '.join(NAMES)}") from None


def flag_attrs(long_name: str = "outcome") -> dict[str, Any]:
    """CF attrs decoding the integer outcome codes."""
    return {
        "long_name": long_name,
        "flag_values": list(range(len(NAMES))),
        "flag_meanings": " ".join(NAMES),
        "units": "1",
    }


def classify(x: torch.Tensor, max_norm: float, dims: int = 1) -> torch.Tensor:
    """Outcome code per element of ``x`` (reducing its last ``dims`` dims): nan / diverged (norm > max_norm) / ok."""
    flat = x.reshape(*x.shape[: x.dim() - dims], -1) if dims else x.unsqueeze(-1)
    code = torch.full(flat.shape[:-1], OK, dtype=torch.int8, device=x.device)
    nan = torch.isnan(flat).any(-1)
    big = (~torch.isfinite(flat)).any(-1) | (flat.abs().amax(-1) > max_norm)
    code = torch.where(big & ~nan, torch.tensor(DIVERGED, dtype=torch.int8), code)
    code = torch.where(nan, torch.tensor(NAN, dtype=torch.int8), code)
    return code


def labels(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Outcome codes to an object array of labels."""
    if isinstance(codes, torch.Tensor):
        codes = codes.cpu().numpy()
    table = np.array(NAMES, dtype=object)
    return table[np.asarray(codes, dtype=np.int64)]


def as_labels(codes: xr.DataArray) -> xr.DataArray:
    """A coded outcome DataArray as labels (same dims/coords)."""
    attrs = {k: v for k, v in codes.attrs.items() if not k.startswith("flag_")}
    return xr.DataArray(labels(codes.values), dims=codes.dims, coords=codes.coords, attrs=attrs, name=codes.name)
