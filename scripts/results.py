#!/usr/bin/env python
"""Regenerate a committed table under results/measured/ (`make results-cpu TABLE=<name>`).

    python scripts/results.py bilp_tab1_cpu              # run what is missing, archive, rebuild
    python scripts/results.py bilp_tab1_cpu --check      # launch nothing; fail unless the search is
                                                         # settled by the archive and the rebuilt table
                                                         # equals the committed one byte for byte
    python scripts/results.py --list

What each name runs is dfdistill/sweeps/committed.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dfdistill.core.artifacts import atomic_write_text  # noqa: E402
from dfdistill.reporting.build import build_table  # noqa: E402
from dfdistill.reporting.cells import distinct  # noqa: E402
from dfdistill.reporting.collect import ARCHIVE_FILE, collect, read_archive  # noqa: E402
from dfdistill.reporting.provenance import relative, relative_text, without_commit  # noqa: E402
from dfdistill.sweeps import cli  # noqa: E402
from dfdistill.sweeps.committed import COMMITTED, Committed, command  # noqa: E402

def relative_record(obj):
    """Every string of a record with machine paths made relative (output dirs, dataset roots, overrides)."""
    if isinstance(obj, dict):
        return {k: relative_record(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_record(v) for v in obj]
    return relative_text(obj) if isinstance(obj, str) else obj


def order(rec: dict) -> tuple:
    pr = (rec.get("config") or {}).get("pruning") or {}
    return (str(rec.get("method")), str(rec.get("pruning")), float(rec.get("pruning_ratio") or 0.0),
            int(pr.get("seed_offset") or 0), str(rec.get("config_key")), str(rec.get("code_version")),
            float(rec.get("acc_mean") or 0.0))


def evidence_dirs(name: str, entry: Committed) -> list[Path]:
    """The committed archives and run dirs whose runs count for `name`."""
    dirs = [entry.out_dir(name)]
    for other in entry.reuse:
        dirs += [COMMITTED[other].out_dir(other), COMMITTED[other].sweep_dir(other)]
    return dirs


def refuse(jobs: list) -> list[int]:
    raise SystemExit(f"error: --check: {len(jobs)} job(s) are not in the committed runs, e.g. "
                     f"{' '.join(jobs[0].overrides)}; run without --check to compute them")


def regenerate(name: str, check: bool = False) -> list[Path]:
    entry = COMMITTED[name]
    sweep, out = entry.sweep_dir(name), entry.out_dir(name)
    argv = [entry.exp, "--sweep-dir", str(sweep), "--no-table", *entry.args]
    for d in evidence_dirs(name, entry):
        argv += ["--reuse", str(d)]
    result = cli.main(argv, launch=refuse if check else None)
    if cli.exit_code(result):
        raise SystemExit(f"error: the sweep of {name} did not finish cleanly; see the lines above")
    records = collect(sweep) if sweep.exists() else []
    for d in evidence_dirs(name, entry):
        records += [r for p in sorted(d.rglob(ARCHIVE_FILE)) for r in read_archive(p)] if d.exists() else []
    records = sorted((relative_record(r) for r in distinct(records)), key=order)
    archive = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    summary = sweep / "search.json"
    if check:  # build beside, compare, touch nothing committed
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / name
            work.mkdir()
            (work / ARCHIVE_FILE).write_text(archive)
            if summary.exists():
                (work / "search.json").write_text(relative_text(summary.read_text()))
            t = build_table(work, exp=entry.exp, out_dir=work, name=name, command=command(name))
            changed = [] if (out / ARCHIVE_FILE).exists() and (out / ARCHIVE_FILE).read_text() == archive else [ARCHIVE_FILE]
            for key in ("markdown", "latex", "csv"):
                built = Path(t[key])
                mine = without_commit(built.read_text().replace(relative(work), relative(out)))
                theirs = without_commit((out / built.name).read_text()) if (out / built.name).exists() else None
                if mine != theirs:
                    changed.append(built.name)
        if changed:
            raise SystemExit(f"error: --check: {name}: rebuilt {', '.join(changed)} differ from the committed files; "
                             f"make results-cpu TABLE={name} regenerates them")
        print(f"[results] {name}: the committed runs settle every cell and rebuild the committed table")
        return []
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / ARCHIVE_FILE, archive)
    if summary.exists():
        atomic_write_text(out / "search.json", relative_text(summary.read_text()))
    t = build_table(out, exp=entry.exp, out_dir=out, name=name, command=command(name))
    print(f"[results] {name}: {len(records)} runs archived, table {relative(t['markdown'])}")
    return [Path(t[k]) for k in ("markdown", "latex", "csv")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="committed table names (see --list); 'all' for every one")
    ap.add_argument("--check", action="store_true", help="launch nothing; the rebuild must equal the committed bytes")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args(argv)
    if a.list or not a.names:
        for name, e in COMMITTED.items():
            print(f"{name:20s} {e.exp:14s} {' '.join(e.args)}" + (f"  (reuses {', '.join(e.reuse)})" if e.reuse else ""))
        return 0
    names = list(COMMITTED) if a.names == ["all"] else a.names
    unknown = [n for n in names if n not in COMMITTED]
    if unknown:
        print(f"error: no committed table {', '.join(unknown)}; choose from {', '.join(COMMITTED)}", file=sys.stderr)
        return 2
    for name in names:
        regenerate(name, a.check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
