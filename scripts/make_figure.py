#!/usr/bin/env python
"""Figures whose data are not (only) results.jsonl lines: BiLP Fig. 4 and EDD Figs. 1-2.

  # what `make fig-bilp-4` / `make fig-edd` run after the target's sweep (run_table): every job the
  # exp plans (same planning, same job dirs), its data computed there, the figure in the sweep dir
  python scripts/make_figure.py diversity --exp bilp_fig4 --profile full
  python scripts/make_figure.py edd --exp edd_figs --profile full

  # BiLP Fig. 4 for one configuration (repeat per dataset, same --out);
  # writes <out>/<dataset>-s<seed>/diversity.json, then <out>/<name>.md/.csv/.png over every dataset there
  python scripts/make_figure.py diversity --out results/measured/bilp_fig4_cpu -- dataset=digits profile=smoke

  # EDD Fig. 1 (cosine similarity of update signals) and Fig. 2 (t-SNE) from a finished EDD run,
  # next to its base method's run (e.g. IDC) when given
  python scripts/make_figure.py edd outputs/.../edd-ipc10/... --base outputs/.../idc-ipc10/... --out results/measured/edd_figs

BiLP Figs. 2-3 are tables of runs: scripts/make_table.py (exp bilp_fig2 / bilp_fig3) writes their PNGs.
The computations live in dfdistill/pruning/analysis.py and dfdistill/reporting/segments.py; this
script is the top layer that loads data, runs what is needed and writes the files.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf, open_dict  # noqa: E402

from dfdistill.core.errors import ConfigError, DataError  # noqa: E402
from dfdistill.reporting.collect import DIVERSITY_FILE, collect  # noqa: E402


def planned(a: argparse.Namespace) -> tuple[Path, list]:
    """The sweep dir and the composed jobs of `a.exp` as its `make` target plans them (run_table)."""
    from dfdistill.sweeps import jobsets
    from dfdistill.sweeps.plan import plan

    sweep_dir, jobs = plan(a.exp, a.profile, a.overrides, a.sweep_dir, adds=jobsets.extra_sets(a.exp, a.overrides))
    broken = [j for j in jobs if j.error]
    if broken:
        raise ConfigError(f"cannot compose {' '.join(broken[0].overrides)}: {broken[0].error}")
    return sweep_dir, jobs


def write_diversity(r, out: Path, n_strata: int) -> Path:
    """Loss scores (cached, as pruning=loss computes them) -> per-stratum diversity -> out/diversity.json;
    kept when it already holds this config's rows (`key`), so a rerun recomputes nothing."""
    from dfdistill.core.artifacts import ArtifactCache
    from dfdistill.data.datasets import load_dataset
    from dfdistill.models.factory import make_model_factory
    from dfdistill.pruning.analysis import stratum_diversity
    from dfdistill.pruning.static import real_scores
    from dfdistill.engine.runtime import resolve_device
    from dfdistill.engine.training import embed_all

    cfg, key = r.cfg, r.result_key
    path = out / DIVERSITY_FILE
    if path.exists() and all(r.get("config_key") == key for r in json.loads(path.read_text()) or [None]):
        print(f"{path}: this config's diversity is there; kept")
        return path
    device = resolve_device(r.top.device)
    cache = ArtifactCache(r.top.cache_dir)
    train, _ = load_dataset(r.dataset, device=device, cache_dir=cache.root)
    factory = make_model_factory(cfg.backbone, train, device)
    pcfg = r.pruning
    scores = real_scores(pcfg, train, factory, cache, r.seed, r.inputs)
    model = factory(int(r.seed))  # a fresh seeded backbone embeds the images (see pruning/analysis.py)
    rows = stratum_diversity(train, scores, n_strata, lambda x: embed_all(model, x))
    meta = {"dataset": cfg.dataset.name, "seed": int(cfg.seed), "profile": cfg.profile.name,
            "trials": pcfg.trials, "epochs": list(pcfg.epochs), "backbone": cfg.backbone.name, "config_key": key}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{**meta, **r} for r in rows], indent=1))
    print(f"{len(rows)} strata of {cfg.dataset.name} -> {path}")
    return path


def diversity_main(a: argparse.Namespace) -> Path:
    """BiLP Fig. 4: the diversity of every planned dataset (--exp) or of one configuration, then the figure."""
    from dfdistill.config.compose import compose_run_config
    from dfdistill.config.resolve import resolve_run
    from dfdistill.sweeps.plan import job_config
    from dfdistill.reporting.build import build_table

    if a.exp:
        folder, jobs = planned(a)
        targets = [(resolve_run(job_config(j)), j.out_dir) for j in jobs]
    elif a.out:
        # output_dir: nothing is written there, but outside @hydra.main its default (Hydra's run dir) is unset
        r = resolve_run(compose_run_config(["logger=none", "pruning=loss", f"output_dir={a.out}", *a.overrides]))
        folder = Path(a.out)
        targets = [(r, folder / f"{r.dataset.name}-s{r.seed}")]
    else:
        raise ConfigError("diversity needs --exp (a planned sweep, e.g. --exp bilp_fig4) or --out DIR")
    for r, out in targets:
        write_diversity(r, Path(out), a.n_strata)
    t = build_table(folder, exp="bilp_fig4", out_dir=a.out or folder, name=a.name or "bilp_fig4")
    print(f"figure {t.get('figure', '—')}; table {t['markdown']}")
    return t["markdown"]


def initial_set(rec: dict, workdir: Path) -> dict:
    """The synthetic set a run started from: the run's own config with 0 iterations and stage=distill,
    so the method's init (seeded, after the same static pruning) is saved and nothing is trained."""
    from dfdistill.run.pipeline import run

    cfg = OmegaConf.create(rec["config"])
    with open_dict(cfg):
        cfg.method.iterations = 0
        # typed, so that re-resolving the recorded config (recipes, profile) keeps the 0
        cfg.cli_overrides = [*(cfg.get("cli_overrides") or []), "method.iterations=0"]
        cfg.stage = "distill"
        cfg.output_dir = str(workdir)
        cfg.resume = None
        cfg.force = True
        cfg.progress = False
        cfg.logger = {"name": "none"}
    run(cfg)
    return torch.load(workdir / "synthetic.pt", map_location="cpu")


def _run(run_dir: Path) -> tuple[dict, dict]:
    recs = collect(run_dir)
    if len(recs) != 1 or not (run_dir / "synthetic.pt").exists():
        raise DataError(f"{run_dir} is not one finished run (needs results.jsonl and synthetic.pt)")
    return recs[0], torch.load(run_dir / "synthetic.pt", map_location="cpu")


def edd_main(a: argparse.Namespace) -> list[Path]:
    """EDD Figs. 1-2 of one EDD run (`run`, --base) or of every EDD job of a planned sweep (--exp),
    each next to the planned job of its base method (same dataset, IPC and seed)."""
    if not a.exp:
        if not a.run or not a.out:
            raise ConfigError("edd needs an EDD run dir and --out DIR, or --exp (a planned sweep, e.g. --exp edd_figs)")
        return [edd_figures(Path(a.run), Path(a.base) if a.base else None, Path(a.out), a.name, a.cls, a.real)]
    if a.run:  # with --exp the first positional is an override (`edd --exp edd_figs dataset=digits`)
        a.overrides = [a.run, *a.overrides]
    folder, jobs = planned(a)
    cell = lambda j: (j.resolved.dataset.name, int(j.resolved.ipc), int(j.resolved.seed))  # noqa: E731
    out = []
    for job in (j for j in jobs if j.resolved.method.name == "edd"):
        base = [j for j in jobs if j.resolved.method.name == job.resolved.method.base and cell(j) == cell(job)]
        ds, ipc, _ = cell(job)
        out.append(edd_figures(job.out_dir, base[0].out_dir if base else None, Path(a.out or folder),
                               f"{a.name}_{ds}_ipc{ipc}", a.cls, a.real))
    if not out:
        raise ConfigError(f"{a.exp} plans no EDD job (method=edd)")
    return out


def edd_figures(run_dir: Path, base_dir: Optional[Path], out: Path, name: str, cls: int, n_real: int) -> Path:
    """Fig. 1 (cosine similarity of final - init per method, and between EDD's segments) and Fig. 2
    (t-SNE of one class: real images, EDD's segments, the base method's set) of one EDD run."""
    from dfdistill.config.resolve import dataset_of
    from dfdistill.data.datasets import load_dataset
    from dfdistill.methods.edd import segment_bounds
    from dfdistill.reporting import plots as P
    from dfdistill.reporting.segments import (segment_cosine, slot_segments, tsne_2d, update_signals,
                                              within_class_cosine)

    rec, fin = _run(run_dir)
    if rec["method"] != "edd":
        raise ConfigError(f"{run_dir} is a {rec['method']} run; pass an EDD run (method=edd)")
    ipc = int(rec["ipc"])
    bounds = segment_bounds(ipc, int(rec["config"]["method"]["segments"]))
    sets = {"EDD": (rec, fin)}
    if base_dir:
        brec, bfin = _run(base_dir)
        sets[brec["method"].upper()] = (brec, bfin)
    out.mkdir(parents=True, exist_ok=True)
    summary, signals = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, (r, f)) in enumerate(sets.items()):
            init = initial_set(r, Path(tmp) / str(i))
            signals[label] = update_signals(f["images"], init["images"])
            summary.append({"method": label, "cosine": within_class_cosine(signals[label], f["labels"]),
                            "images": int(f["images"].shape[0]), "run": str(r.get("output_dir"))})
    seg = slot_segments(fin["labels"], ipc, bounds)
    mat = segment_cosine(signals["EDD"], fin["labels"], seg, len(bounds))
    names = [f"S{k + 1}" for k in range(len(bounds))]
    matrix = pd.DataFrame(mat.numpy(), index=names, columns=names)
    pd.DataFrame(summary).to_csv(out / f"{name}_fig1.csv", index=False)
    matrix.to_csv(out / f"{name}_fig1_segments.csv")
    P.segment_similarity(pd.DataFrame(summary), matrix, out / f"{name}_fig1.png",
                         title="EDD Fig. 1: cosine similarity of update signals (final - init)")

    train, _ = load_dataset(dataset_of(rec["config"]["dataset"]), device=torch.device("cpu"))
    c = cls
    real_rows = train.class_indices[c][: n_real]
    parts = [("real", train.images[real_rows].cpu())]
    for k, seg_name in enumerate(names):
        parts.append((f"EDD {seg_name}", fin["images"][(fin["labels"] == c) & (seg == k)]))
    for label, (_, f) in sets.items():
        if label != "EDD":
            parts.append((label, f["images"][f["labels"] == c]))
    xy = tsne_2d(torch.cat([p for _, p in parts]).float(), seed=int(rec.get("seed") or 0))
    src = [s for s, p in parts for _ in range(p.shape[0])]
    df = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "source": src})
    df.to_csv(out / f"{name}_fig2.csv", index=False)
    P.tsne_scatter(df, out / f"{name}_fig2.png", title=f"EDD Fig. 2: t-SNE, class {c}")
    md = out / f"{name}.md"
    md.write_text(_edd_markdown(run_dir, base_dir, name, summary, matrix, c))
    print(f"EDD figures -> {md}")
    return md


def _edd_markdown(run_dir: Path, base_dir: Optional[Path], name: str, summary: list[dict], matrix: pd.DataFrame,
                  c: int) -> str:
    from dfdistill.reporting.render import to_markdown

    return "\n".join([
        "# EDD Figs. 1-2", "", f"- EDD run: {run_dir}", f"- base run: {base_dir or '—'}",
        "- Fig. 1: mean cosine similarity of the update signals (final - initial image) between distinct "
        "images of a class, averaged over classes; initial images re-created from each run's config with 0 "
        "iterations. Lower = images updated in more different directions.", "",
        to_markdown(pd.DataFrame(summary).round(3)), "EDD, between segments:", "", to_markdown(matrix.round(3), index=True),
        f"![Fig. 1]({name}_fig1.png)", "",
        f"- Fig. 2: t-SNE (pixels of the normalised images) of class {c}: real images, EDD's segments, the base set "
        f"(data: {name}_fig2.csv).", "", f"![Fig. 2]({name}_fig2.png)", ""])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("diversity", help="BiLP Fig. 4: per-stratum diversity of one dataset or a sweep (+ the figure)")
    d.add_argument("--n-strata", type=int, default=10)
    d.add_argument("--name", default=None, help="file stem of the figure/table (default bilp_fig4)")
    e = sub.add_parser("edd", help="EDD Figs. 1-2 from a finished EDD run (+ its base method's run) or a sweep")
    e.add_argument("run", nargs="?", default=None, help="a finished EDD run dir (or use --exp)")
    e.add_argument("--base", default=None, help="the base method's finished run (e.g. IDC) to compare with")
    e.add_argument("--cls", type=int, default=0, help="class shown in the t-SNE (default 0)")
    e.add_argument("--real", type=int, default=300, help="real images of that class in the t-SNE")
    e.add_argument("--name", default="edd")
    for p in (d, e):
        p.add_argument("--exp", default=None, help="conf/exp/<exp>.yaml: every job its make target plans")
        p.add_argument("--profile", default="cpu", help="with --exp: full | cpu | smoke")
        p.add_argument("--sweep-dir", type=Path, default=None, help="with --exp: default the exp's hydra.sweep.dir")
        p.add_argument("--out", default=None, help="where the figures go (default: the sweep dir)")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset=mnist profile=cpu")
    a = ap.parse_args(argv)
    try:
        diversity_main(a) if a.cmd == "diversity" else edd_main(a)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
