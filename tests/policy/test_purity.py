"""policy/ stays pure: no sim/shim imports, no I/O, no clock, no global random state."""

from __future__ import annotations

import ast
from pathlib import Path

import gpu_router.policy

POLICY = Path(gpu_router.policy.__file__).parent
FORBIDDEN_MODULES = {
    "time",
    "datetime",
    "random",
    "os",
    "io",
    "socket",
    "asyncio",
    "subprocess",
    "pathlib",
    "sqlite3",
    "logging",
    "httpx",
    "starlette",
    "simpy",
    "threading",
}
FORBIDDEN_PREFIXES = ("gpu_router.sim", "gpu_router.shim", "gpu_router.sweep")
FORBIDDEN_CALLS = {"open", "print", "input"}
FORBIDDEN_ATTRS = {
    ("np", "random", "seed"),
    ("np", "random", "rand"),
    ("np", "random", "randint"),
    ("np", "random", "random"),
    ("np", "random", "choice"),
    ("np", "random", "normal"),
    ("np", "random", "exponential"),
    ("np", "random", "uniform"),
    ("np", "random", "shuffle"),
}


def _sources():
    files = sorted(POLICY.rglob("*.py"))
    assert len(files) >= 10
    return [(f, ast.parse(f.read_text(), str(f))) for f in files]


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def test_policy_imports_nothing_impure():
    for path, tree in _sources():
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                assert root not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
                assert not name.startswith(FORBIDDEN_PREFIXES), f"{path.name} imports {name}"


def test_policy_calls_no_io_and_no_global_random():
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Name):
                    assert node.func.id not in FORBIDDEN_CALLS, f"{path.name} calls {node.func.id}"
                dotted = _dotted(node.func)
                assert dotted not in FORBIDDEN_ATTRS, f"{path.name} calls {'.'.join(dotted)}"
                local_rng = dotted == ("np", "random", "default_rng")
                assert dotted[:2] != ("np", "random") or local_rng, (
                    f"{path.name} uses global numpy random {'.'.join(dotted)}"
                )


def test_the_checker_catches_a_violation(tmp_path):
    bad = ast.parse("import time\nx = time.time()\nnp.random.seed(1)\n")
    imports = [n for n in ast.walk(bad) if isinstance(n, ast.Import)]
    assert imports[0].names[0].name in FORBIDDEN_MODULES
    calls = [_dotted(n.func) for n in ast.walk(bad) if isinstance(n, ast.Call)]
    assert ("np", "random", "seed") in calls
