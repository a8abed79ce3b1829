"""Every committed result is regenerable: it names its command and clean commit, carries no machine
path, and a committed table equals what its own runs rebuild (so it cannot be older than them)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from dfdistill.reporting.build import build_table
from dfdistill.reporting.collect import ARCHIVE_FILE, read_archive
from dfdistill.reporting.provenance import HEADER_KEYS, MACHINE_PATH, read_header, relative, without_commit
from dfdistill.sweeps.committed import COMMITTED, command

RESULTS = ROOT / "results"
TEXT = {".md", ".csv", ".tex", ".json", ".jsonl", ".sh", ".yaml", ".txt"}
CLEAN_SHA = re.compile(r"^[0-9a-f]{7,40}$")


def tracked() -> list[Path]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "results"], capture_output=True, text=True).stdout
    files = [ROOT / line for line in out.splitlines() if line.strip()]
    return [p for p in files if p.exists()] or [p for p in RESULTS.rglob("*") if p.is_file()]


def header_problems(text: str) -> list[str]:
    """What a committed markdown result's header lacks (empty when it is complete)."""
    head = read_header(text)
    problems = [f"no '{k}' line" for k in HEADER_KEYS if k not in head]
    if "command" in head and not re.search(r"`[^`]+`", head["command"]):
        problems.append("the command is not written out in backticks")
    if "commit" in head and not CLEAN_SHA.match(head["commit"]):
        problems.append(f"commit {head['commit']!r} is not one clean commit")
    return problems


def test_header_check_catches_what_it_must():
    good = "# T\n\n- **command**: `make x`\n- **commit**: 0123abc\n- **profile**: cpu\n- **device**: cpu\n"
    assert header_problems(good) == []
    assert "commit '0123abc+dirty' is not one clean commit" in header_problems(good.replace("0123abc", "0123abc+dirty"))
    assert "no 'command' line" in header_problems(good.replace("- **command**: `make x`\n", ""))
    assert MACHINE_PATH.search("dataset path: /work/shared/data") and not MACHINE_PATH.search("90 / 85 (Δ +5) a/b")


@pytest.mark.parametrize("path", [p for p in tracked() if p.suffix == ".md" and "paper" not in p.parts],
                         ids=lambda p: str(p.relative_to(RESULTS)))
def test_every_committed_markdown_names_command_clean_commit_profile_device(path):
    assert header_problems(path.read_text()) == [], path


def test_no_committed_result_carries_a_machine_path():
    bad = {}
    for p in tracked():
        if p.suffix in TEXT:
            hits = MACHINE_PATH.findall(p.read_text(errors="replace"))
            if hits:
                bad[str(p.relative_to(ROOT))] = hits[:3]
    assert not bad


def test_every_committed_file_belongs_to_a_documented_result():
    """A CSV, picture or archive sits in a folder (or below one) whose markdown says where it came from."""
    orphans = []
    for p in tracked():
        if p.suffix == ".md" or "paper" in p.relative_to(RESULTS).parts:
            continue
        if not any(any(d.glob("*.md")) for d in [p.parent, *p.parent.parents] if d.is_relative_to(RESULTS / "measured")):
            orphans.append(str(p.relative_to(ROOT)))
    assert not orphans


def test_every_archived_run_comes_from_a_clean_commit():
    dirty = []
    for p in tracked():
        if p.name == ARCHIVE_FILE:
            dirty += [f"{p.relative_to(ROOT)}: {r.get('code_version')}" for r in read_archive(p)
                      if not CLEAN_SHA.match(str(r.get("code_version")))]
    assert not dirty


@pytest.mark.parametrize("name", [n for n in COMMITTED if (RESULTS / "measured" / n / ARCHIVE_FILE).exists()])
def test_committed_table_equals_the_rebuild_from_its_own_runs(name, tmp_path):
    """The table a user reads is what its archived runs give today (a table older than its runs, or
    a cell that disagrees with its source, fails here); only the builder's commit line may differ."""
    src = RESULTS / "measured" / name
    work = tmp_path / name
    work.mkdir()
    for f in (ARCHIVE_FILE, "search.json"):
        if (src / f).exists():
            (work / f).write_bytes((src / f).read_bytes())
    t = build_table(work, exp=COMMITTED[name].exp, out_dir=work, name=name, command=command(name))
    for key in ("markdown", "csv", "latex"):
        committed = (src / Path(t[key]).name).read_text()
        rebuilt = Path(t[key]).read_text().replace(relative(work), relative(src)).replace(str(work), relative(src))
        assert without_commit(rebuilt) == without_commit(committed), f"{name}: {key} is stale; make results-cpu TABLE={name}"


def test_fig2_agrees_with_tables_1_and_2_cell_by_cell():
    """Fig. 2's arrows are Tables 1-2's cells: random = Table 1, loss = Table 2, for every cell."""
    import pandas as pd

    m = RESULTS / "measured"
    if not all((m / n / f"{n}.csv").exists() for n in ("bilp_tab1_cpu", "bilp_tab2_cpu", "bilp_fig2_cpu")):
        pytest.skip("the CPU Tables 1-2 / Fig. 2 are not committed")
    tab = {crit: pd.read_csv(m / n / f"{n}.csv") for crit, n in (("random", "bilp_tab1_cpu"), ("loss", "bilp_tab2_cpu"))}
    fig = pd.read_csv(m / "bilp_fig2_cpu" / "bilp_fig2_cpu.csv")
    checked = 0
    for _, c in fig[fig.runs > 0].iterrows():
        crit = "random" if str(c["col"]).startswith("random") else "loss"
        head, method = str(c["row"]).rsplit(": ", 1)
        t = tab[crit]
        match = t[(t.row == head) & (t.col == method) & (t.runs > 0)]
        assert len(match) == 1, (c["row"], c["col"])
        assert match.iloc[0].ours_mean == c.ours_mean and bool(match.iloc[0].lower_bound) == bool(c.lower_bound)
        checked += 1
    assert checked >= 4


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in COMMITTED if (RESULTS / "measured" / n / ARCHIVE_FILE).exists()])
def test_make_results_check_settles_every_cell_from_the_committed_runs(name):
    """`make results-cpu TABLE=<name> CHECK=1`: the search re-planned from the committed archives
    launches nothing (no dataset needed) and rebuilds the committed table and archive byte for byte."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main([name, "--check"]) == 0


def test_making_a_text_relative_twice_changes_nothing():
    """this_command() already makes its paths relative; a header that does it again must not stack markers."""
    from dfdistill.reporting.provenance import REPO, relative_text

    once = relative_text(f"python scripts/x.py --out /home/nobody-here/run/t.md --res {REPO}/results/a.md")
    assert relative_text(once) == once
    assert "<outside>/run/t.md" in once and " results/a.md" in once and "<outside><outside>" not in once
