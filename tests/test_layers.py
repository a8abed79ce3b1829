"""No import runs back up the pipeline's layers (every import counts, also those inside functions).

The layers, lowest first, are the order data flows through the package: foundations, config schemas,
data and models, training and scoring, evaluation, methods, pruning, run control (checkpoints, run
dirs, saved sets, resolution), and the entry points/reporting on top. A new top-level module must be
placed here (the test names it otherwise). A module may import its own layer or lower ones only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

LAYERS: list[tuple[str, ...]] = [
    ("errors", "log", "losses", "runtime", "memory", "artifacts", "compiled", "divergence"),
    ("config.schema", "config.options", "config.renames", "registry", "recipes"),
    ("data", "models"),
    ("training", "scoring"),
    ("evaluation",),
    ("methods",),
    ("pruning",),
    ("checkpoint", "loop", "rundir", "synthetic", "preflight", "config.resolve", "config.store", "config.compose",
     "config", "distilled"),
    ("pipeline", "eval_set", "reporting", "tables", "callbacks", "bench", "sweeps", "cli"),
]


def layer_of(module: str) -> int:
    """Layer index of a dfdistill module (its longest listed prefix); unlisted modules fail the test."""
    name = module.removeprefix("dfdistill.")
    best = None
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (i, prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to tests/test_layers.py LAYERS")
    return best[0]


def imports() -> list[tuple[str, str]]:
    out = []
    for path in sorted((ROOT / "dfdistill").rglob("*.py")):
        mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dfdistill"):
                names = [node.module] if node.module != "dfdistill" else [f"dfdistill.{a.name}" for a in node.names]
                out += [(mod, n) for n in names]
            elif isinstance(node, ast.Import):
                out += [(mod, a.name) for a in node.names if a.name.startswith("dfdistill")]
    return out


def test_no_import_runs_up_the_layers():
    upward = sorted({f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
                     for a, b in imports() if a != "dfdistill" and layer_of(b) > layer_of(a)})
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("module,expected", [("dfdistill.methods.dc", 5), ("dfdistill.config.resolve", 7),
                                             ("dfdistill.schema.groups", 1), ("dfdistill.data.loaders.digits", 2)])
def test_layer_lookup(module, expected):
    assert layer_of(module) == expected
