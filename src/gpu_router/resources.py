"""Where the files the project reads at run time live: ``data/`` (traces, fixtures),
``scenarios/``, ``sweeps/`` and ``dashboards/``.

The repository keeps one copy of each, at its root. An installed wheel carries them
under ``gpu_router/_share/`` (copied there by the build hook in ``setup.py``), and that
copy wins wherever it exists; otherwise (a checkout, an editable install) the folders of
the checkout are used. ``$GPU_ROUTER_DATA`` points ``data/`` elsewhere (another copy, a
bigger trace folder).
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path

ENV_DATA = "GPU_ROUTER_DATA"
#: The repository-root folders a wheel carries (``setup.py`` copies them) and how a
#: checkout is recognised as holding them (a file or folder inside each).
SHARED = {
    "data": "traces",
    "scenarios": "gate",
    "sweeps": "default.yaml",
    "dashboards": "app.py",
}
#: The folder inside the package that holds the packaged copies.
PACKAGED = "_share"


class DataNotFound(LookupError):
    """A shared folder (traces, fixtures, scenarios, sweeps, dashboards) could not be found."""


def packaged_dir(name: str) -> Path | None:
    """The wheel's copy of the shared folder ``name``, or None (a checkout has none)."""
    if name not in SHARED:
        raise KeyError(name)
    base = resources.files("gpu_router").joinpath(PACKAGED, name)
    path = Path(str(base))
    return path if (path / SHARED[name]).exists() else None


def checkout_dir(name: str) -> Path | None:
    """The folder ``name`` at the root of the checkout this module runs from, or None."""
    if name not in SHARED:
        raise KeyError(name)
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").exists() and (parent / name / SHARED[name]).exists():
            return parent / name
    return None


def shared_dir(name: str) -> Path:
    """The shared folder ``name``: the packaged copy, else the checkout's."""
    found = packaged_dir(name) or checkout_dir(name)
    if found is None:
        raise DataNotFound(f"{name}/ not found in the package or a checkout")
    return found


def data_dir() -> Path:
    """The data folder: ``$GPU_ROUTER_DATA``, else the packaged or the checkout's ``data/``."""
    env = os.environ.get(ENV_DATA)
    if env:
        return Path(env)
    try:
        return shared_dir("data")
    except DataNotFound:
        raise DataNotFound(
            f"data folder not found; set {ENV_DATA} to a folder with traces/"
        ) from None


def scenarios_dir() -> Path:
    """The project's ``scenarios/`` (``gate/`` inside holds the gate scenarios)."""
    return shared_dir("scenarios")


def sweeps_dir() -> Path:
    """The project's ``sweeps/``."""
    return shared_dir("sweeps")


def dashboard_app() -> Path:
    """The Streamlit comparison dashboard script (``dashboards/app.py``)."""
    return shared_dir("dashboards") / "app.py"


def find_named(name: str, folder: str, extra: list[Path] | None = None) -> Path | None:
    """``name`` as a path, else ``name[.yaml|.yml]`` in ``extra``, ``./<folder>`` and the
    project's ``<folder>`` (packaged or checkout); None when none is a file."""
    dirs = [*(extra or []), Path.cwd() / folder]
    with contextlib.suppress(DataNotFound):
        dirs.append(shared_dir(folder))
    candidates = [Path(name)]
    for d in dirs:
        candidates += [d / name, d / f"{name}.yaml", d / f"{name}.yml"]
    for path in candidates:
        if path.is_file():
            return path.resolve()
    return None
