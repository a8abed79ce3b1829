"""BiLP §5.4 / Fig. 3 analyses: stratified distillation (sort by score, 10 class-balanced strata,
distill from each) and a diversity metric per stratum (intra-class / inter-class embedding variance).

Run: flock /tmp/dfdistill-cpu.lock python -m dfdistill.pruning.analysis --out results/measured/strata \\
        -- dataset=digits method=dc ipc=1 profile=smoke
Each stratum k is the pipeline with `pruning=loss pruning.stratum=k` (S1 = largest loss).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

from dfdistill.artifacts import atomic_write_text


def diversity(emb: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """intra = mean over classes of the mean squared distance to the class mean; inter = variance of
    class means around the global mean; ratio = intra / inter (higher = more diverse within class)."""
    means, intra = [], []
    for c in range(num_classes):
        e = emb[labels == c]
        if e.shape[0] == 0:
            continue
        m = e.mean(0)
        means.append(m)
        intra.append(((e - m) ** 2).sum(1).mean())
    M = torch.stack(means)
    inter = ((M - M.mean(0)) ** 2).sum(1).mean()
    i = torch.stack(intra).mean()
    return {"intra": float(i), "inter": float(inter), "ratio": float(i / inter.clamp_min(1e-12))}


def stratum_diversity(real, scores: Tensor, n_strata: int, model) -> list[dict[str, float]]:
    from dfdistill.pruning.static import stratum_rows
    from dfdistill.training import embed_all

    out = []
    for k in range(1, n_strata + 1):
        rows = stratum_rows(real, scores, k, n_strata)
        out.append(diversity(embed_all(model, real.images[rows]), real.labels[rows], real.num_classes))
    return out


def write_table_and_plot(rows: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| stratum | acc mean | acc std | intra | inter | intra/inter |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| S{r['stratum']} | {100 * r['acc_mean']:.2f} | {100 * r['acc_std']:.2f} | "
                     f"{r['intra']:.3f} | {r['inter']:.3f} | {r['ratio']:.3f} |")
    atomic_write_text(out / "strata.md", "\n".join(lines) + "\n")
    atomic_write_text(out / "strata.json", json.dumps(rows, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ks = [r["stratum"] for r in rows]
    ax[0].errorbar(ks, [100 * r["acc_mean"] for r in rows], yerr=[100 * r["acc_std"] for r in rows], marker="o")
    ax[0].set(xlabel="stratum (S1 = largest loss)", ylabel="test acc (%)", title="stratified distillation")
    ax[1].plot(ks, [r["ratio"] for r in rows], marker="o")
    ax[1].set(xlabel="stratum", ylabel="intra/inter variance", title="diversity")
    fig.tight_layout()
    fig.savefig(out / "strata.png", dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/measured/strata")
    ap.add_argument("--n-strata", type=int, default=10)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict

    from dfdistill.artifacts import ArtifactCache
    from dfdistill.config.resolve import CONF_DIR, resolve_config
    from dfdistill.config.store import register_configs
    from dfdistill.data.datasets import load_dataset
    from dfdistill.models.factory import make_model_factory
    from dfdistill.pipeline import run
    from dfdistill.pruning.static import parse_config, real_scores

    register_configs()
    rows = []
    for k in range(1, a.n_strata + 1):
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
            cfg = compose("config", overrides=["logger=none", "pruning=loss", f"pruning.stratum={k}",
                                               f"pruning.n_strata={a.n_strata}", *a.overrides])
        with open_dict(cfg):
            cfg.output_dir = str(Path(a.out) / f"S{k}")
            cfg.progress = False
        rec = run(cfg)
        if k == 1:  # diversity per stratum under the scoring cfg's network family (fresh, seeded)
            rcfg = resolve_config(cfg)
            cache = ArtifactCache(rcfg.cache_dir)
            train, _ = load_dataset(rcfg.dataset, device=torch.device("cpu"), cache_dir=cache.root)
            factory = make_model_factory(rcfg.backbone, train, torch.device("cpu"))
            scores = real_scores(rcfg, train, factory, cache, parse_config(rcfg.pruning))
            div = stratum_diversity(train, scores, a.n_strata, factory(rcfg.seed))
        rows.append({"stratum": k, "acc_mean": rec["acc_mean"], "acc_std": rec["acc_std"], **div[k - 1]})
    write_table_and_plot(rows, Path(a.out))


if __name__ == "__main__":
    main()
