"""Same command, same bytes: numbers never depend on the clock, the machine's load or a cache.

`compile=auto` once compiled a path after it had spent 8 CPU seconds, so a loaded machine (or a warm
compile cache) changed a run's rounding and its whole trajectory. These tests run one config twice
with the clock patched to run very fast and very slow (as a quiet and a loaded machine would look to
the process) and compare the synthetic set and the accuracies bit for bit.
"""

from __future__ import annotations

import itertools
import time

import pytest
import torch

from dfdistill.engine import compiled
from dfdistill.run.pipeline import run

ARGS = ["profile=smoke", "dataset=digits", "method=dm", "ipc=1", "compile=auto", "eval.compare_random=false"]


def _clock(step: float):
    """A process clock that advances `step` seconds per reading (0: never; 1e3: a very busy machine)."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


@pytest.mark.parametrize("args", [ARGS, [*ARGS[:2], "method=dc", *ARGS[3:]]], ids=["dm", "dc"])
def test_same_config_same_bytes_whatever_the_clock(compose_cfg, tmp_path, monkeypatch, args):
    monkeypatch.delenv("DFDISTILL_COMPILE", raising=False)  # the suite forces off; this test is about auto
    out = {}
    old = compiled.settings()
    try:
        for name, step in (("fast", 0.0), ("slow", 1e3)):
            compiled.reset()
            monkeypatch.setenv("DFDISTILL_CACHE", str(tmp_path / f"cache-{name}"))  # each run computes its own set
            monkeypatch.setattr(time, "process_time", _clock(step))
            monkeypatch.setattr(time, "perf_counter", _clock(step))
            monkeypatch.setattr(time, "monotonic", _clock(step))
            info = run(compose_cfg(args, tmp_path / name))
            monkeypatch.undo()
            monkeypatch.delenv("DFDISTILL_COMPILE", raising=False)
            out[name] = (torch.load(tmp_path / name / "synthetic.pt"), info)
    finally:
        compiled.restore(old)
        compiled.reset()
    (fast, info_fast), (slow, info_slow) = out["fast"], out["slow"]
    assert torch.equal(fast["images"], slow["images"]) and torch.equal(fast["labels"], slow["labels"])
    assert info_fast["accs"] == info_slow["accs"]
    assert info_fast["compiled"] is False and info_slow["compiled"] is False  # auto on CPU: eager, recorded
    assert not info_slow.get("distilled_in")  # the second run distilled again (no shared index or cache)
