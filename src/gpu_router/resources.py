"""Where the files the project reads at run time live: ``data/`` (traces, fixtures).

A checkout reads the repository's own ``data/``; ``$GPU_ROUTER_DATA`` points
elsewhere (another copy, a bigger trace folder). Nothing outside the repository is
needed.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA = "GPU_ROUTER_DATA"


class DataNotFound(LookupError):
    """The data folder (traces, fixtures) could not be found."""


def data_dir() -> Path:
    """The data folder: ``$GPU_ROUTER_DATA``, else the ``data/`` of this checkout."""
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "data" / "traces").is_dir():
            return parent / "data"
    raise DataNotFound(f"data folder not found; set {ENV_DATA} to a folder with traces/")
