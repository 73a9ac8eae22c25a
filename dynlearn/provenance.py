"""What a store records about how it was made: the config hash and the software/machine provenance."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from typing import Any

from ._version import __version__

__all__ = ["config_hash", "provenance"]


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-able config (sorted keys): what identifies an experiment in its store."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, allow_nan=False).encode()).hexdigest()[:16]


def provenance() -> dict[str, Any]:
    """Versions of dynlearn and its numerical stack, the platform, the host and the time."""
    import numpy as np
    import torch
    import xarray as xr
    import zarr

    return {
        "dynlearn": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "xarray": xr.__version__,
        "zarr": zarr.__version__,
        "platform": platform.platform(),
        "host": platform.node(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
