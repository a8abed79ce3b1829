"""The run: data -> (scores) -> pruning -> (experts) -> distill -> evaluate -> report.

`run(cfg)` is a plain function (no Hydra decorator) so tests and scripts call it directly.
A finished run directory is idempotent: rerunning the same config returns the stored result;
an unfinished one resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from dfdistill.artifacts import ArtifactCache, config_key, load_tensor_file, save_tensor_file, CorruptArtifact
from dfdistill.config.resolve import CONF_DIR, identity, method_class, method_config, resolve_config
from dfdistill.data.real import RealData
from dfdistill.errors import ConfigError, DataError, DivergenceError
from dfdistill.evaluation.protocol import evaluate_set, resolve_eval
from dfdistill.methods.base import DistillContext, Distiller
from dfdistill.reporting.logger import build_logger
from dfdistill.reporting.results import RESULTS_FILE, mean_std, read_results, save_grid, write_results

CHECKPOINT_FILE = "checkpoint.pt"


# ---------------------------------------------------------------------------------------------- #
# small pieces
# ---------------------------------------------------------------------------------------------- #
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device=cuda requested but no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def code_version() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        sha = out.stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (sha + ("+dirty" if dirty else "")) if sha else "unknown"
    except Exception:
        return "unknown"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


@dataclass
class StageTimer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


def backbone_options(bcfg: DictConfig) -> dict[str, Any]:
    return {k: v for k, v in OmegaConf.to_container(bcfg, resolve=True).items() if k not in ("name", "_target_")}


def make_model_factory(bcfg: DictConfig, real: RealData, device: torch.device) -> Callable[[int], torch.nn.Module]:
    """seed -> freshly initialised backbone on `device` (initialisation independent of global RNG)."""
    from dfdistill.models import build_model

    name, opts = bcfg.name, backbone_options(bcfg)

    def factory(seed: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, real.channels, real.num_classes, real.image_size, **opts)
        return model.to(device)

    return factory


def check_backbone_fits(factory: Callable[[int], torch.nn.Module], real: RealData, bname: str, dname: str) -> None:
    """Fail early, in one line, when the data's channels/size cannot feed the backbone."""
    try:
        model = factory(0)
        with torch.no_grad():
            out = model(real.images[:2])
        if out.shape[-1] != real.num_classes:
            raise DataError(f"backbone={bname} outputs {out.shape[-1]} classes but dataset={dname} has {real.num_classes}")
    except DataError:
        raise
    except RuntimeError as exc:
        raise DataError(
            f"backbone={bname} cannot take dataset={dname} images of shape {tuple(real.images.shape[1:])} "
            f"({str(exc).splitlines()[0][:120]}); pick a backbone for {real.channels}-channel "
            f"{real.image_size}px input or set dataset.image_size/channels") from None


def backbone_config(name: str) -> DictConfig:
    path = CONF_DIR / "backbone" / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (CONF_DIR / "backbone").glob("*.yaml"))
        raise ConfigError(f"eval.cross_arch entry {name!r} is not a backbone; choose from {valid}")
    return OmegaConf.load(path)


# ---------------------------------------------------------------------------------------------- #
# checkpointing
# ---------------------------------------------------------------------------------------------- #
def rng_state() -> dict[str, Any]:
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_checkpoint(out_dir: Path, key: str, it: int, distiller: Distiller, history: list[dict]) -> None:
    sel = distiller.ctx.adaptive  # the in-loop selector's running statistics / lazy decisions, beside the distiller
    save_tensor_file(out_dir / CHECKPOINT_FILE, {"config_key": key, "iteration": it, "distiller": distiller.state_dict(),
                                                 "adaptive": sel.state_dict() if sel is not None else None,
                                                 "rng": rng_state(), "history": history})


def load_checkpoint(out_dir: Path, key: str) -> Optional[dict]:
    path = out_dir / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        ck = load_tensor_file(path)
    except (CorruptArtifact, EOFError, RuntimeError) as exc:
        bad = path.with_suffix(".corrupt")
        path.replace(bad)
        print(f"[dfdistill] checkpoint {path} unreadable ({exc}); moved to {bad.name}, starting fresh")
        return None
    if ck.get("config_key") != key:
        raise ConfigError(f"{path} belongs to a different config; use another output dir "
                          f"(hydra.run.dir=...) or delete the checkpoint to start over")
    return ck


# ---------------------------------------------------------------------------------------------- #
# the run
# ---------------------------------------------------------------------------------------------- #
def distill_loop(distiller: Distiller, cfg: DictConfig, out_dir: Path, key: str, logger, timer: StageTimer) -> dict:
    """Iterate with checkpoints every `checkpoint_every`; resume; stop cleanly on NaN/Inf."""
    distiller.init_state()
    start, history = 0, []
    ck = load_checkpoint(out_dir, key)
    if ck is not None:
        distiller.load_state_dict(ck["distiller"])
        if distiller.ctx.adaptive is not None and ck.get("adaptive") is not None:
            distiller.ctx.adaptive.load_state_dict(ck["adaptive"])
        set_rng_state(ck["rng"])
        start, history = int(ck["iteration"]), list(ck["history"])
        print(f"[dfdistill] resumed from {out_dir / CHECKPOINT_FILE} at iteration {start}/{distiller.iterations}")
    total = distiller.iterations
    step_times: list[float] = []
    bar = tqdm(range(start, total), initial=start, total=total, desc=f"distill[{cfg.method.name}]",
               disable=not cfg.progress or total == 0)
    sel = distiller.ctx.adaptive
    for it in bar:
        t0 = time.perf_counter()
        if sel is not None:
            sel.begin_iteration(it)  # the selector's lazy schedule counts iterations, not its calls
        metrics = distiller.step(it)
        loss = float(metrics["loss"])
        step_times.append(time.perf_counter() - t0)
        if not np.isfinite(loss):
            where = f"last good checkpoint kept at {out_dir / CHECKPOINT_FILE}" if (out_dir / CHECKPOINT_FILE).exists() else "no checkpoint yet"
            raise DivergenceError(f"distillation loss became {loss} at iteration {it}; {where}; "
                                  f"lower method.lr_img (now {cfg.method.get('lr_img')}) and rerun to resume")
        history.append({"it": it, "loss": loss})
        if it % cfg.log_every == 0 or it == total - 1:
            bar.set_postfix(loss=f"{loss:.4g}")
            logger.log({"distill/loss": loss, "distill/sec_per_iter": step_times[-1]}, step=it)
        if (it + 1) % cfg.checkpoint_every == 0 or it == total - 1:
            save_checkpoint(out_dir, key, it + 1, distiller, history)
    if total == 0 or start == total:
        save_checkpoint(out_dir, key, total, distiller, history)
    return {"iterations": total, "resumed_from": start,
            "sec_per_iter": float(np.median(step_times)) if step_times else None,
            "ite_seconds_per_iter": sel.seconds / len(step_times) if sel is not None and step_times else None,
            "loss_history": history[-50:]}


def run(cfg: DictConfig) -> dict:
    """Execute one configured run and return its result record (also written to results.jsonl)."""
    cfg = resolve_config(cfg)
    out_dir = Path(cfg.resume or cfg.output_dir).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ident = identity(cfg)
    key = config_key(ident)
    done = out_dir / RESULTS_FILE
    if done.exists() and not cfg.force:
        recs = [r for r in read_results(done) if r.get("config_key") == key]
        if recs:
            print(f"[dfdistill] {done} already holds this config's result; skipping (force=true recomputes)")
            return recs[-1]

    timer = StageTimer()
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    cache = ArtifactCache(cfg.cache_dir)
    run_name = f"{cfg.dataset.name}-{cfg.method.name}-ipc{cfg.ipc}-{cfg.pruning.name}-s{cfg.seed}"
    logger = build_logger(cfg.logger, OmegaConf.to_container(cfg, resolve=True), out_dir, run_name)
    failed = True
    try:
        from dfdistill.data.augment import build_augment
        from dfdistill.data.datasets import load_dataset

        with timer("data"):
            train, test = load_dataset(cfg.dataset, device=device, cache_dir=cache.root)
        factory = make_model_factory(cfg.backbone, train, device)
        check_backbone_fits(factory, train, cfg.backbone.name, cfg.dataset.name)
        n_total = len(train)

        from dfdistill.pruning import apply_static_pruning, build_adaptive

        with timer("pruning"):
            train, prune_info = apply_static_pruning(cfg, train, factory, cache, device)
        adaptive = None
        if method_class(cfg).supports_adaptive:
            adaptive = build_adaptive(cfg, train)
        elif cfg.pruning.get("adaptive"):  # bilp before MTT/TESLA/coresets = its static half (BiLP Table 7's BiLP+MTT)
            prune_info["adaptive"] = f"not applied: {cfg.method.name} has no real-batch matching step"
            print(f"[dfdistill] pruning={cfg.pruning.name}: {cfg.method.name} has no real-batch matching step, so only "
                  "the static (preemptive) pruning applies")

        mcfg = method_config(cfg)
        augment = build_augment("dsa", cfg.dataset.dsa_strategy)
        ctx = DistillContext(real=train, ipc=cfg.ipc, model_factory=factory, augment=augment, device=device,
                             seed=cfg.seed, cache=cache, out_dir=out_dir, progress=cfg.progress, adaptive=adaptive,
                             extra={"cfg": cfg, "timer": timer})
        distiller: Distiller = method_class(cfg)(mcfg, ctx)
        with timer("prepare"):
            distiller.prepare()
        if cfg.stage in ("experts", "scores"):
            failed = False
            return {"stage": cfg.stage, "stage_seconds": timer.seconds}
        with timer("distill"):
            info = distill_loop(distiller, cfg, out_dir, key, logger, timer)

        images, labels = distiller.train_set()
        torch.save({"images": images.cpu(), "labels": labels.cpu(), "lr": distiller.eval_lr(),
                    "mean": train.mean, "std": train.std, "zca": None if train.zca is None else train.zca.state_dict()},
                   out_dir / "synthetic.pt.tmp")
        os.replace(out_dir / "synthetic.pt.tmp", out_dir / "synthetic.pt")
        grid = save_grid(train.denormalize(images.float()), labels, out_dir / "synthetic.png")
        logger.image("synthetic/grid", grid)
        if cfg.stage == "distill":
            failed = False
            return {"stage": "distill", **info, "stage_seconds": timer.seconds}

        ev = resolve_eval(cfg.eval, mcfg.eval_aug, distiller.eval_lr() or mcfg.eval_lr, cfg.dataset.dsa_strategy)
        eval_aug = build_augment(ev.aug, ev.aug_strategy)
        with timer("eval"):
            accs = evaluate_set(images, labels, test, factory, ev, eval_aug, seed=cfg.seed, progress=cfg.progress,
                                desc=f"eval[{cfg.method.name}]")
        record: dict[str, Any] = {}
        if cfg.eval.compare_random and cfg.method.name != "random":
            from dfdistill.methods.coreset import CoresetConfig, RandomSubset

            # the baseline draws from the same kept rows; the in-loop selector is the method's, not its
            rnd = RandomSubset(CoresetConfig(name="random", _target_="random"), replace(ctx, adaptive=None))
            rnd.init_state()
            ev_r = resolve_eval(cfg.eval, mcfg.eval_aug, mcfg.eval_lr, cfg.dataset.dsa_strategy)
            with timer("eval_random"):
                raccs = evaluate_set(rnd.images, rnd.labels, test, factory, ev_r, eval_aug, seed=cfg.seed,
                                     progress=cfg.progress, desc="eval[random]")
            m, s = mean_std(raccs)
            record.update(random_accs=raccs, random_mean=m, random_std=s)
        cross = {}
        for arch in cfg.eval.cross_arch:
            f2 = make_model_factory(backbone_config(arch), train, device)
            with timer(f"eval_{arch}"):
                a = evaluate_set(images, labels, test, f2, ev, eval_aug, seed=cfg.seed, progress=cfg.progress, desc=f"eval[{arch}]")
            cross[arch] = {"accs": a, "mean": mean_std(a)[0], "std": mean_std(a)[1]}

        m, s = mean_std(accs)
        record = {
            "config_key": key, "config": OmegaConf.to_container(cfg, resolve=True),
            "dataset": cfg.dataset.name, "backbone": cfg.backbone.name, "method": cfg.method.name, "ipc": cfg.ipc,
            "pruning": cfg.pruning.name, "pruning_ratio": float(cfg.pruning.get("ratio", 0.0)), "seed": cfg.seed,
            "profile": cfg.profile.name, "accs": accs, "acc_mean": m, "acc_std": s, "n_eval": len(accs),
            **record, "cross_arch": cross, "eval": ev.__dict__, "eval_lr": ev.lr,
            "n_real_total": n_total, "n_real_used": len(train), "pruning_info": prune_info,
            "stage_seconds": timer.seconds, "wall_seconds": sum(timer.seconds.values()),
            "sec_per_iter": info["sec_per_iter"], "ite_seconds_per_iter": info["ite_seconds_per_iter"],
            "iterations": info["iterations"], "resumed_from": info["resumed_from"],
            "peak_memory_mb": peak_memory_mb(device), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "code_version": code_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "output_dir": str(out_dir),
        }
        write_results(out_dir, record)
        logger.summary({"eval/acc_mean": m, "eval/acc_std": s, **({"eval/random_mean": record["random_mean"]} if "random_mean" in record else {})})
        failed = False
        return record
    finally:
        logger.finish(failed=failed)


def format_summary(rec: dict) -> str:
    """The human line printed at the end of `python run.py`."""
    if "acc_mean" not in rec:
        return f"stage {rec.get('stage')} finished"
    line = (f"{rec['method']} @ IPC {rec['ipc']} on {rec['dataset']}: "
            f"{100 * rec['acc_mean']:.2f} ± {100 * rec['acc_std']:.2f}% (n={rec['n_eval']})")
    if "random_mean" in rec:
        line += f"  |  random real subset, same protocol: {100 * rec['random_mean']:.2f} ± {100 * rec['random_std']:.2f}%"
    line += f"  |  {rec['wall_seconds']:.0f}s, results: {rec['output_dir']}/results.jsonl"
    return line
