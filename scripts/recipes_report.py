#!/usr/bin/env python
"""Every job of every paper table at profile=full: the settings it resolves to and where each value
comes from (a recipe row with its source, the table's axis, or the exp file).

    python scripts/recipes_report.py --out results/measured/recipes_full.md

Jobs that differ only in the pruning ratio, its removal trial or the seed resolve to the same
settings, so they are listed once with their count. The sources are listed once at the end.
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omegaconf import OmegaConf  # noqa: E402

from dfdistill.config.resolve import resolve_config  # noqa: E402
from dfdistill.core.log import log  # noqa: E402
from dfdistill.recipes import load_recipes  # noqa: E402
from dfdistill.reporting.layouts import SPECS  # noqa: E402
from dfdistill.reporting.provenance import header_lines, relative  # noqa: E402
from dfdistill.sweeps.jobsets import extra_sets  # noqa: E402
from dfdistill.sweeps.plan import job_config, plan  # noqa: E402
from dfdistill.sweeps.preview import differing, fmt_value  # noqa: E402

SAME_SETTINGS = ("pruning.ratio", "pruning.seed_offset", "seed")  # vary within a cell, never a recipe key


def table_exps() -> list[str]:
    return [e for e in SPECS if (ROOT / "conf" / "exp" / f"{e}.yaml").exists() and e != "quickstart"]


def signature(overrides: list[str]) -> tuple[str, ...]:
    return tuple(o for o in overrides if o.split("=", 1)[0] not in SAME_SETTINGS)


def describe(job) -> list[str]:
    job.resolved = resolve_config(job_config(job))
    cfg = job.resolved
    applied: dict[str, str] = {}
    for info in cfg.provenance.recipe.values():
        for key, v in (info.get("applied") or {}).items():
            applied[key] = str(v["source"]).split(":", 1)[0]
    typed = set(cfg.provenance.typed)
    lines = []
    values = {**{k: OmegaConf.select(cfg, k) for k in applied if "." in k}, **differing(job)}
    for key, value in sorted(values.items()):
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if key.startswith(("method.name", "method._target_", "eval.name", "backbone.name", "pruning.name",
                           "dataset.name")) or key in SAME_SETTINGS or key == "ipc":  # in the entry's heading
            continue
        where = applied.get(key) or ("table axis" if key in typed else "exp file / group option")
        lines.append(f"  - `{key}` = {fmt_value(value)} — {where}")
    for group in ("method", "pruning"):
        info = cfg.provenance.recipe[group]
        if info.get("recipe") == "none":
            lines.append(f"  - {group} recipe: none ({info.get('reason')})")
        elif info.get("note"):
            lines.append(f"  - {group} recipe note: {info['note']}")
    lines.append(f"  - evaluation protocol: `eval={cfg.eval.name}`; backbone `{cfg.backbone.name}`")
    return [f"- **{cfg.method.name}, {cfg.dataset.name}, IPC {cfg.ipc}, pruning={cfg.pruning.name}**"] + lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "measured" / "recipes_full.md")
    ap.add_argument("--tables", nargs="*", default=None, help="exp names (default: every table)")
    a = ap.parse_args(argv)
    log.setLevel("WARNING")
    shown = relative(a.out)
    out = header_lines("Every table job at profile=full: resolved settings and their sources",
                       f"python scripts/recipes_report.py --out {shown}", profile="full", device="n/a (planning only)")
    out += ["", "Listed per job: every value a recipe set, and every other value that differs",
            "from the job's group YAML defaults; each names its recipe row (sources at the end), the table axis",
            "or the exp file. Jobs differing only in pruning ratio, removal trial or seed share one entry.", ""]
    for exp in a.tables or table_exps():
        _, jobs = plan(exp, "full", [], adds=extra_sets(exp, []), check=False)
        cells: "OrderedDict[tuple, list]" = OrderedDict()
        for job in jobs:
            cells.setdefault(signature(job.overrides), []).append(job)
        out += [f"## {exp}: {len(jobs)} jobs, {len(cells)} distinct settings", ""]
        for sig, group in cells.items():
            varying = sorted({o for j in group for o in j.overrides if o.split("=", 1)[0] in SAME_SETTINGS})
            head = " ".join(o for o in sig if not o.startswith(("+exp=", "profile=")))
            count = (f"  - job: `{head}` ({len(group)} job{'s' if len(group) > 1 else ''}"
                     f"{': ' + ', '.join(varying) if varying and len(group) > 1 else ''})")
            try:
                first, *rest = describe(group[0])
                out += [first, count, *rest]
            except Exception as exc:  # a cell that does not resolve is reported, not hidden
                out += [f"- **{head}**", f"  - does not resolve: {str(exc).splitlines()[0]}"]
        out.append("")
    out += ["## Recipe sources", ""]
    for f in load_recipes():
        for r in f.rows:
            out.append(f"- `{f.name}#{r.index}` ({r.dataset}, ipc {r.ipc}): {r.source}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(out) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
