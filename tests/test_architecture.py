"""The layout's rules (DESIGN section 2), checked on the source: no import cycle, imports
point one way between the layers, no mixin class, no module over 400 lines, and the
service reads the policy only through its public names and never the Router's private
state."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import gpu_router
import gpu_router.policy

SRC = Path(gpu_router.__file__).parent
MAX_LINES = 400

#: package prefix -> the gpu_router packages it must never import
FORBIDDEN = {
    "gpu_router.policy": (
        "gpu_router.sim",
        "gpu_router.shim",
        "gpu_router.sweep",
        "gpu_router.twin",
    ),
    "gpu_router.sim": ("gpu_router.shim", "gpu_router.twin"),
    "gpu_router.client": (
        "gpu_router.shim",
        "gpu_router.sim",
        "gpu_router.sweep",
        "gpu_router.twin",
    ),
    # the twin drives the service as a black box: processes, config keys and HTTP
    "gpu_router.twin": ("gpu_router.shim", "gpu_router.sweep"),
    "gpu_router.shim": ("gpu_router.twin",),
    "gpu_router.sweep": ("gpu_router.twin",),
    "gpu_router.shim.store": ("gpu_router.shim.core", "gpu_router.shim.http"),
    "gpu_router.shim.core": ("gpu_router.shim.http",),
    "gpu_router.shim.worker": (
        "gpu_router.shim.core",
        "gpu_router.shim.http",
        "gpu_router.shim.store",
    ),
    "gpu_router.shim.gpu_sources": (
        "gpu_router.shim.core",
        "gpu_router.shim.http",
        "gpu_router.shim.store",
    ),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports(name: str) -> Iterator[tuple[str, list[str], int]]:
    """``(module imported, names taken from it, line)`` for every import in the module,
    at any depth (lazy and ``TYPE_CHECKING`` imports count: they are still edges)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names], node.lineno


def edges(name: str) -> set[str]:
    """The project modules ``name`` imports (``from pkg import mod`` names the module)."""
    out = set()
    for target, names, _line in imports(name):
        if not target.startswith("gpu_router"):
            continue
        submodules = {f"{target}.{n}" for n in names} & MODULES.keys()
        out |= submodules
        if target in MODULES and (len(submodules) < len(names) or not names):
            out.add(target)  # a name the package itself defines or re-exports
    out.discard(name)
    return out


def test_no_import_cycle() -> None:
    graph = {m: edges(m) for m in MODULES}
    # a package's __init__ importing its own submodules is how Python packages work; only
    # cycles that pass through at least two modules that are not that package count
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                if not _init_reexport(cycle):
                    cycles.append(cycle)
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _init_reexport(cycle: list[str]) -> bool:
    """A cycle through a package __init__ and its own submodule only (``pkg -> pkg.mod ->
    pkg``): the submodule imported a name the package re-exports."""
    return len(set(cycle)) == 2 and any(a.startswith(b + ".") for a in cycle for b in cycle)


@pytest.mark.parametrize("prefix", sorted(FORBIDDEN))
def test_imports_point_one_way(prefix: str) -> None:
    bad = []
    for m in MODULES:
        if m != prefix and not m.startswith(prefix + "."):
            continue
        for target, _names, line in imports(m):
            if any(target == f or target.startswith(f + ".") for f in FORBIDDEN[prefix]):
                bad.append(f"{m}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def test_no_mixin_classes() -> None:
    found = [
        f"{m}: class {node.name}"
        for m, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name.endswith("Mixin")
    ]
    assert not found, found


def test_no_module_over_400_lines() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_shim_imports_only_public_policy_names() -> None:
    public = set(gpu_router.policy.__all__)
    bad = []
    for m in MODULES:
        if not m.startswith("gpu_router.shim"):
            continue
        for target, names, line in imports(m):
            if target.startswith("gpu_router.policy."):
                bad.append(f"{m}:{line} imports from {target} (use gpu_router.policy)")
            elif target == "gpu_router.policy":
                bad += [f"{m}:{line} imports private {n}" for n in names if n not in public]
    assert not bad, "\n".join(bad)


def test_shim_reads_no_private_router_state() -> None:
    """No ``<...router>._name`` in the service: the Router is read through its public API."""
    bad = []
    for m, path in MODULES.items():
        if not m.startswith("gpu_router.shim"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and ast.unparse(node.value).split(".")[-1] in ("router", "r", "_router")
            ):
                bad.append(f"{m}:{node.lineno} {ast.unparse(node)}")
    assert not bad, "\n".join(bad)


def test_the_checks_see_the_whole_tree() -> None:
    """The walk finds every layer (a check that sees nothing would pass vacuously)."""
    layers = ("policy", "sim", "shim.http", "shim.core", "shim.store", "shim.worker", "client")
    for layer in (*layers, "twin"):
        assert any(m.startswith(f"gpu_router.{layer}.") for m in MODULES), layer
    assert "gpu_router.shim.core.service" in edges("gpu_router.shim.http.app")
