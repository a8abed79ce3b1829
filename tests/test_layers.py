"""No import runs back up the package's layers, as drawn in docs/architecture.md (every import counts,
also those inside functions), and no module lives loose at the package top.

LAYERS is the drawing, lowest first: one entry per layer, the packages on it. A module belongs to the
layer of its package, always (no module is placed apart from its package). A module may import its own
layer or lower ones only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("engine",),
    ("schema", "recipes"),
    ("data", "models"),
    ("scoring",),
    ("evaluation",),
    ("methods",),
    ("pruning",),
    ("config",),
    ("reporting",),
    ("run",),
    ("sweeps", "bench"),
    ("entry",),
]
PACKAGE = ROOT / "dfdistill"


def layer_of(module: str) -> int:
    """Layer index of a dfdistill module: the layer of its top-level package; unlisted packages fail."""
    package = module.removeprefix("dfdistill.").split(".")[0]
    for i, layer in enumerate(LAYERS):
        if package in layer:
            return i
    raise AssertionError(f"{module}: package {package!r} is in no layer; add it to docs/architecture.md "
                         "and tests/test_layers.py LAYERS")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def imports() -> list[tuple[str, str]]:
    """(importing module, imported dfdistill module) for every import statement, wherever it is."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{mod}: relative import; write the dfdistill.<...> path")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dfdistill"):
                names = [node.module] if node.module != "dfdistill" else [f"dfdistill.{a.name}" for a in node.names]
                out += [(mod, n) for n in names]
            elif isinstance(node, ast.Import):
                out += [(mod, a.name) for a in node.names if a.name.startswith("dfdistill")]
    return out


def test_no_import_runs_up_the_layers():
    upward = sorted({f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
                     for a, b in imports() if a != "dfdistill" and b != "dfdistill" and layer_of(b) > layer_of(a)})
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def test_no_loose_top_level_module():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"loose modules at dfdistill/: {loose}; put each in the package of its layer"


def test_every_package_is_drawn_and_every_drawn_package_exists():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    drawn = {p for layer in LAYERS for p in layer}
    assert packages == drawn


def test_layers_match_the_drawing_in_docs():
    """docs/architecture.md's drawing lists the same layers in the same order (top first there)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("```")[1]
    rows = [line.split("|")[0].split() for line in block.splitlines() if "|" in line]
    assert [tuple(r) for r in reversed(rows)] == LAYERS


@pytest.mark.parametrize("module,expected", [("dfdistill.core.errors", 0), ("dfdistill.schema.groups", 2),
                                             ("dfdistill.data.loaders.digits", 3), ("dfdistill.config.resolve", 8),
                                             ("dfdistill.entry.cli", 12)])
def test_layer_lookup(module, expected):
    assert layer_of(module) == expected


def test_an_upward_import_is_found(tmp_path, monkeypatch):
    """The check sees an import inside a function (the case a cycle-dodging import hides in)."""
    pkg = tmp_path / "dfdistill" / "core"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from dfdistill.run import pipeline\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", tmp_path / "dfdistill")
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert ("dfdistill.core.x", "dfdistill.run") in imports()
