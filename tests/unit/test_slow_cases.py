"""tests/slow_cases.txt moves measured-slow cases behind `-m slow`: each line must name a test that exists,
or the default run would silently keep a slow case (or lose track of a renamed one)."""

from __future__ import annotations

import re

from conftest import ROOT, SLOW_CASES


def test_every_slow_case_names_an_existing_test():
    missing = []
    for nodeid in SLOW_CASES:
        path, _, name = nodeid.partition("::")
        func = re.sub(r"\[.*\]$", "", name)
        file = ROOT / path
        if not file.exists() or not re.search(rf"^def {re.escape(func)}\(", file.read_text(), re.M):
            missing.append(nodeid)
    assert SLOW_CASES and not missing, missing
