"""The wheel carries data/, scenarios/, sweeps/ and dashboards/app.py, and an installed
``gpu-router`` finds them from any directory.

Builds the wheel (pip, build isolation: setuptools comes from the package index), installs
it without dependencies into a fresh venv whose only other path is this venv's
site-packages (for numpy, pandas, ...; its .pth files are not run, so the editable install
of the checkout is not visible), and runs the console script from a directory outside the
checkout. About 15-25 s.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = {
    "data/traces/azure_llm_2023_conv.csv",
    "data/fixtures/h100_service_times.json",
    "data/fixtures/nvml_h100_capture.json",
    "scenarios/steady.yaml",
    "scenarios/gate/steady_small.yaml",
    "sweeps/default.yaml",
    "dashboards/app.py",
}


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (
        f"{args} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    )
    return p.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        ROOT,
        env,
    )
    (whl,) = out.glob("gpu_router-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (purelib,) = (venv / "lib").glob("python3*/site-packages")
    # Dependencies from this venv's site-packages (a plain path: its .pth files,
    # the editable install's among them, are not processed).
    (purelib / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GPU_ROUTER_DATA", "PYTHONPATH")}
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        ROOT,
        env,
    )
    return venv, env


def test_wheel_holds_the_shared_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = {p for p in SHARED if f"gpu_router/_share/{p}" not in names}
    assert not missing, f"not in {wheel.name}: {sorted(missing)}"
    assert not any("__pycache__" in n for n in names if "_share" in n)


def test_wheel_holds_the_client_and_the_docs_page_asset(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "gpu_router/shim/http/assets/docs.css" in names  # /docs has no CDN to fall back on
    assert "gpu_router/client/__init__.py" in names


def test_installed_wheel_finds_its_files(installed, tmp_path):
    venv, env = installed
    probe = (
        "import json, gpu_router, gpu_router.resources as r;"
        "print(json.dumps({'pkg': gpu_router.__file__, 'data': str(r.data_dir()),"
        " 'scenarios': str(r.scenarios_dir()), 'sweeps': str(r.sweeps_dir()),"
        " 'app': str(r.dashboard_app())}))"
    )
    got = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], tmp_path, env))
    pkg = Path(got["pkg"]).resolve()
    assert pkg.is_relative_to(venv.resolve()), f"gpu_router came from {pkg}, not the wheel"
    share = pkg.parent / "_share"
    for key in ("data", "scenarios", "sweeps"):
        assert Path(got[key]) == share / key
    assert Path(got["app"]) == share / "dashboards" / "app.py"


def test_installed_cli_runs_packaged_scenarios_and_gate(installed, tmp_path):
    venv, env = installed
    cli = str(venv / "bin" / "gpu-router")
    out = _run([cli, "sim", "steady", "-s", "hybrid-seed", "--json"], tmp_path, env)
    summary = json.loads(out)
    assert summary["scenario"] == "steady"
    (row,) = [r for r in summary["summary"]["hybrid-seed"] if r["priority"] == "all"]
    assert row["n_completed"] > 1000
    # A trace scenario: reads data/traces/ from the wheel (5 simulated minutes).
    out = _run(
        [cli, "sim", "azure_llm_replay", "-s", "hybrid-seed", "--set", "horizon_s=300", "--json"],
        tmp_path,
        env,
    )
    (row,) = [r for r in json.loads(out)["summary"]["hybrid-seed"] if r["priority"] == "all"]
    assert row["n_completed"] > 1000
    out = _run([cli, "gate"], tmp_path, env)
    assert "gate: passed" in out and "in 3 scenarios" in out
    out = _run([cli, "dashboard", "--print-command"], tmp_path, env)
    assert "_share/dashboards/app.py" in out
