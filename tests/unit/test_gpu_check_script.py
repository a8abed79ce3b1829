"""scripts/gpu_check.sh is run only the day a GPU is lent: what it names must still exist then."""

from __future__ import annotations

import re

from conftest import ROOT


def test_every_test_file_and_script_the_gpu_check_runs_exists() -> None:
    """The tests were reorganised by layer once and the check kept the old paths (it would have run no
    test on the GPU and said so only there)."""
    text = (ROOT / "scripts" / "gpu_check.sh").read_text()
    paths = set(re.findall(r"(?:tests|scripts)/[\w/]+\.(?:py|sh)", text))
    assert any(p.startswith("tests/") for p in paths) and any(p.startswith("scripts/") for p in paths)
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing
