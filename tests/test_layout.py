"""The package's layout keeps the flow: one package per stage, no import cycles, nothing reaching back up.

Read with `ast` only: nothing under test is imported, so a broken module cannot hide a cycle. Every import counts,
also one inside a function (a lazy import still ties two modules together); only torch is judged at module level,
where it costs every importer (the statistics layer must stay usable without it).
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1] / "scalingkit"

# Which stage may import which, besides the shared modules (config, errors, progress, device, durable), which every
# stage may import and which import nothing of scalingkit but errors.
# The flow: families -> model -> train -> store; sweep -> run; store -> fit -> optimal -> plots -> cli.
ALLOWED = {
    "model": set(),
    "train": {"model"},
    "families": {"model", "train"},  # the TnL family trains its generator GPT with the engine's schedule
    "store": {"model", "families"},
    "sweep": {"model", "train", "families", "store"},
    "run": {"model", "train", "families", "store", "sweep"},
    "fit": set(),
    "optimal": {"fit", "store"},
    "plots": {"fit", "optimal", "store", "families", "sweep"},
    "cli": {"model", "train", "families", "store", "sweep", "run", "fit", "optimal", "plots"},
}
SHARED = {"config", "errors", "progress", "device", "durable"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(tree: ast.Module, name: str, is_package: bool, known: set[str]):
    """(imported module, at module level?) for every import in the tree, relative ones resolved."""
    package = name if is_package else name.rpartition(".")[0]

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            nested = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, top
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    yield (sub if sub in known else base), top
            yield from visit(child, nested)

    yield from visit(tree, True)


def graph() -> tuple[nx.DiGraph, dict[str, set[str]]]:
    """Edges between scalingkit's modules; and, per module, the outside packages it imports at module level."""
    mods = modules()
    known = set(mods)
    g = nx.DiGraph()
    top_level: dict[str, set[str]] = {}
    for name, path in mods.items():
        g.add_node(name)
        tree = ast.parse(path.read_text(), filename=str(path))
        top_level[name] = set()
        for target, top in _imports(tree, name, path.name == "__init__.py", known):
            if target.startswith("scalingkit"):
                while target not in known:  # `import scalingkit.fit.x` of a name: the nearest module
                    target = target.rpartition(".")[0]
                # a module taking names from its own package's __init__ is not a cycle
                if target != name and not name.startswith(target + "."):
                    g.add_edge(name, target)
            elif top:
                top_level[name].add(target.split(".")[0])
    return g, top_level


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_sees_the_package():
    g, _ = graph()
    assert {"model", "train", "store", "fit", "optimal", "plots", "cli", "run", "sweep"} <= {stage(m) for m in g}
    # a known edge is seen, lazy or not: the CLI's train command reaches the runner
    assert any(a.startswith("scalingkit.cli") and b.startswith("scalingkit.run") for a, b in g.edges)


def test_no_import_cycles():
    g, _ = graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_stages_import_only_what_comes_before_them():
    g, _ = graph()
    bad = []
    for a, b in g.edges:
        sa, sb = stage(a), stage(b)
        if sa == sb or sb in SHARED or sb == "":
            continue
        if sa in SHARED:
            bad.append(f"{a} -> {b} (shared modules import nothing of scalingkit but errors)")
        elif sb not in ALLOWED.get(sa, set()):
            bad.append(f"{a} -> {b}")
    assert not bad, "imports reaching back up the flow:\n" + "\n".join(sorted(bad))


def test_shared_modules_import_nothing_of_scalingkit_but_its_errors():
    g, _ = graph()
    for name in SHARED:
        assert set(g.successors(f"scalingkit.{name}")) <= {"scalingkit.errors"}, name
    assert not list(g.successors("scalingkit.errors"))


@pytest.mark.parametrize("stage_name", ["fit", "optimal"])
def test_statistics_never_import_torch_at_module_level(stage_name):
    _, top = graph()
    offenders = [m for m, pkgs in top.items() if stage(m) == stage_name and "torch" in pkgs]
    assert not offenders


def test_training_never_imports_the_statistics_or_figures():
    g, _ = graph()
    bad = [(a, b) for a, b in g.edges if stage(a) in ("train", "model") and stage(b) in ("fit", "optimal", "plots")]
    assert not bad


def test_few_modules_loose_at_the_top():
    loose = [p.name for p in ROOT.glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= 6, loose
    assert set(p.removesuffix(".py") for p in loose) <= SHARED


def test_every_package_says_what_it_does_and_may_import():
    for init in ROOT.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init.parent.name}/__init__.py needs a docstring saying what it may import"


def test_the_checker_finds_a_cycle(tmp_path, monkeypatch):
    """The rules can fail: a two-module cycle and a torch import in fit are found in a package made for it."""
    pkg = tmp_path / "scalingkit"
    (pkg / "fit").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "fit" / "__init__.py").write_text('"""Fits. Imports nothing."""\n')
    (pkg / "fit" / "a.py").write_text("import torch\nfrom scalingkit.fit import b\n")
    (pkg / "fit" / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    g, top = graph()
    assert [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1] == [["scalingkit.fit.a",
                                                                                       "scalingkit.fit.b"]]
    assert "torch" in top["scalingkit.fit.a"]
