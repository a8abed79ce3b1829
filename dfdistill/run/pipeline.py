"""The run: load data -> scores/prune -> experts (prepare) -> distill -> evaluate -> report.

`run(cfg)` is a plain function (no Hydra decorator) so tests and scripts call it directly; it reads
as the list of stages below, each a function of the run `Session` and what earlier stages made.
Identities (dfdistill.config.resolve): the distillation's key tags the checkpoint, so `stage=distill`
then `stage=all` (or another `eval=`) continue one distillation; each evaluation of a set is its own
line in results.jsonl. A finished evaluation is returned as stored (`force=true` recomputes); an
unfinished distillation resumes from its last checkpoint (dfdistill.run.loop, dfdistill.run.checkpoint).
A run dir that differs only in what is outside the distillation's identity (e.g. `eval.num_eval=2`)
finds the finished distillation by its key (dfdistill.run.distilled) and only evaluates it.
`stage=eval synthetic=<file or run dir>` evaluates a saved set without distilling.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from dfdistill.engine import compiled
from dfdistill.run import distilled
from dfdistill.core.artifacts import ArtifactCache, atomic_write_text
from dfdistill.run.checkpoint import CHECKPOINT_FILE
from dfdistill.config.resolve import resolve_run
from dfdistill.config.resolved import ResolvedRun
from dfdistill.data.real import RealData
from dfdistill.core.errors import Interrupted
from dfdistill.run.eval_set import apply_set_metadata, check_set
from dfdistill.evaluation.protocol import evaluate_set, is_convnet_bn, resolve_eval
from dfdistill.core.log import log
from dfdistill.run.loop import check_resume_before_work, distill_loop
from dfdistill.methods.base import DistillContext, Distiller, build_context
from dfdistill.models.factory import ModelFactory, backbone_config, check_backbone_fits, make_model_factory
from dfdistill.run.preflight import check_classes, check_config, check_per_class, check_set_size, check_trains
from dfdistill.reporting.logger import NullLogger, build_logger
from dfdistill.reporting.results import RESULTS_FILE, mean_std, read_results, save_grid, write_results
from dfdistill.core.rundir import run_lock
from dfdistill.engine.runtime import (
    StageTimer, code_version, configure_runtime, peak_memory_mb, resolve_device, seed_everything,
)
from dfdistill.engine.training import configure_speed
from dfdistill.run.synthetic import SYNTHETIC_FILE, SyntheticSet, fit_to_data, load_synthetic, save_synthetic
from dfdistill.data.datasets import load_dataset
from dfdistill.methods.coreset import Coreset
from dfdistill.pruning import apply_static_pruning
from dfdistill.data.augment import build_augment
from dfdistill.pruning import build_adaptive
from dfdistill.config.resolve import dataset_identity
from dfdistill.methods.coreset import CoresetConfig, RandomSubset


RESOLVED_FILE = "resolved.yaml"  # the effective config (recipes, profile, typed values) beside .hydra/


@dataclass
class Session:
    """What every stage shares: the resolved run (typed parts and keys), where it writes, and how it reports."""

    run: ResolvedRun
    out_dir: Path
    device: torch.device
    cache: ArtifactCache
    logger: NullLogger
    timer: StageTimer = field(default_factory=StageTimer)

    @property
    def cfg(self) -> DictConfig:
        """The effective config as written (provenance and logging)."""
        return self.run.cfg

    @property
    def key(self) -> str:
        """The set's key: the distillation's identity (checkpoint tag), or for stage=eval the saved set's."""
        return self.run.set_key

    @property
    def record_key(self) -> str:
        """This evaluation of that set (results.jsonl `config_key`)."""
        return self.run.result_key


@dataclass
class Data:
    """The real data the method sees (after static pruning) and the backbone factory."""

    train: RealData
    test: RealData
    factory: ModelFactory
    n_total: int
    prune_info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- #
# the run
# ---------------------------------------------------------------------------------------------- #
def run(cfg: DictConfig) -> dict:
    """Execute one configured run and return its result record (also written to results.jsonl)."""
    syn = None
    if cfg.get("stage") == "eval" and cfg.get("synthetic"):  # the set's method and IPC, unless typed
        syn = load_synthetic(cfg.synthetic)
        check_set(syn)
        cfg = apply_set_metadata(cfg, syn)
    r = resolve_run(cfg, set_key=syn.key() if syn is not None else None)
    check_config(r.cfg)
    check_trains(r)
    out_dir = Path(r.top.output_dir).expanduser().resolve()
    with run_lock(out_dir):
        atomic_write_text(out_dir / RESOLVED_FILE, OmegaConf.to_yaml(r.cfg))  # what runs, with its provenance
        if r.stage == "eval":
            return run_eval(r, out_dir, syn or load_synthetic(r.top.synthetic))
        stored = stored_result(out_dir, r.result_key, r.top.force or r.stage != "all")
        if stored is not None:
            distilled.register_existing(ArtifactCache(r.top.cache_dir), r.distill_key, out_dir)
            if r.top.resume:
                log.info(f"resume={r.top.resume} not used: this config's result is already stored (above); "
                         "delete that results.jsonl line, or change what resume= should change")
            return stored
        check_resume_before_work(r, out_dir)
        distilled_in = reuse_distillation(r, out_dir)
        with session(r, out_dir) as s:
            data = prune(s, load_data(s))
            distiller = prepare_method(s, data)
            if r.stage in ("experts", "scores"):
                return {"stage": r.stage, "stage_seconds": s.timer.seconds}
            info = {**distill(s, distiller), "distilled_in": distilled_in}
            syn = save_outputs(s, distiller, data.train, info)
            if r.stage == "distill":
                return {"stage": "distill", **info, "stage_seconds": s.timer.seconds}
            return report(s, data, evaluate(s, data, syn, distiller.evaluate), info)


def run_eval(r: ResolvedRun, out_dir: Path, syn: SyntheticSet) -> dict:
    """stage=eval: evaluate a saved set (ours or another codebase's) under this config's protocol (the
    set's own method and IPC where the command names none: dfdistill.run.eval_set)."""
    stored = stored_result(out_dir, r.result_key, r.top.force)
    if stored is not None:
        return stored
    with session(r, out_dir) as s:
        data = prune(s, load_data(s))
        syn = fit_to_data(syn, data.train, r.dataset.name)
        source = {"synthetic": str(syn.source), **syn.meta}
        return report(s, data, evaluate(s, data, syn, method_evaluator(s, data)), {}, source)


def reuse_distillation(r: ResolvedRun, out_dir: Path) -> Optional[str]:
    """The run dir whose finished distillation this run continues instead of distilling (only the
    evaluation differs: dfdistill.run.distilled), its checkpoint copied in; None when there is none to use."""
    top = r.top
    if top.stage not in ("all", "distill") or top.force or top.resume or (out_dir / CHECKPOINT_FILE).exists():
        return None
    source = distilled.find(ArtifactCache(top.cache_dir), r.distill_key, out_dir)
    if source is None:
        return None
    distilled.adopt(source, out_dir)
    log.info(f"this distillation was finished in {source}; evaluating its set without distilling again "
             "(force=true distils from scratch)")
    return str(source)


def stored_result(out_dir: Path, record_key: str, recompute: bool) -> Optional[dict]:
    """The stored result of this evaluation in `out_dir`, unless asked to recompute; says when it
    was computed by another code version (reused anyway, as documented)."""
    done = out_dir / RESULTS_FILE
    if recompute or not done.exists():
        return None
    recs = [r for r in read_results(done) if r.get("config_key") == record_key]
    if not recs:
        return None
    stored, now = recs[-1].get("code_version", "unknown"), code_version()
    if stored != now:
        log.info(f"{done} holds this config's result from code version {stored} (this is {now}); reusing it, "
                 "skipping (force=true recomputes)")
    else:
        log.info(f"{done} already holds this config's result; skipping (force=true recomputes)")
    return recs[-1]


@contextmanager
def session(r: ResolvedRun, out_dir: Path) -> Iterator[Session]:
    """Device, seeds, cache and logger for one run; the logger is finished (failed or not) on exit,
    and a Ctrl-C outside the loop becomes one line that says what was kept."""
    device = resolve_device(r.top.device)
    configure_runtime(r.top, device)  # memory: and gpu: blocks (process-wide, like torch's backend flags)
    configure_speed(r.top)
    seed_everything(r.seed)
    cache = ArtifactCache(r.top.cache_dir)
    run_name = f"{r.dataset.name}-{r.cfg.method.name}-ipc{r.ipc}-{r.pruning.name}-s{r.seed}"
    logger = build_logger(r.logger, OmegaConf.to_container(r.cfg, resolve=True), out_dir, run_name)
    failed = True
    try:
        yield Session(r, out_dir, device, cache, logger)
        failed = False
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(f"interrupted; finished work is kept (checkpoint in {out_dir}, cached experts/scores in "
                          f"{cache.root}); rerun the same command to continue") from None
    finally:
        logger.finish(failed=failed)


# ---------------------------------------------------------------------------------------------- #
# stages
# ---------------------------------------------------------------------------------------------- #
def load_data(s: Session) -> Data:
    """Both splits on the device; the backbone and every cross-arch backbone checked on one batch."""

    r, cfg = s.run, s.cfg
    with s.timer("data"):
        train, test = load_dataset(r.dataset, device=s.device, cache_dir=s.cache.root)
    check_classes(train, r.dataset.name)
    factory = make_model_factory(cfg.backbone, train, s.device)
    check_backbone_fits(factory, train.images, train.num_classes, cfg.backbone.name, r.dataset.name)
    for arch in r.eval.cross_arch:  # before any work: a cross-arch failure after distilling loses it
        check_backbone_fits(make_model_factory(backbone_config(arch), train, s.device), train.images,
                            train.num_classes, arch, r.dataset.name, role="eval.cross_arch entry")
    return Data(train, test, factory, n_total=len(train))


def prune(s: Session, data: Data) -> Data:
    """Static (preemptive) pruning: the kept rows every later stage sees."""

    r = s.run
    with s.timer("pruning"):
        train, info = apply_static_pruning(r.pruning, data.train, data.factory, s.cache, r.seed, r.inputs)
    if r.eval.compare_random and r.stage in ("all", "eval"):
        check_per_class(train, r.ipc, "the random real baseline")
    elif r.stage != "eval" and issubclass(r.method_cls, Coreset):
        check_per_class(train, r.ipc, f"the {r.cfg.method.name} subset")
    if r.stage != "eval":
        check_set_size(r.ipc, train, s.device)
    return replace(data, train=train, prune_info=info)


def method_context(s: Session, data: Data, augment: bool = False, adaptive: Any = None) -> DistillContext:
    """This run's context for its method over the kept rows (`augment`: the method's DSA)."""
    r = s.run
    return build_context(data.train, data.factory, ipc=r.ipc, seed=r.seed, device=s.device, cache=s.cache,
                         out_dir=s.out_dir, augment=augment, dsa_strategy=r.dataset.dsa_strategy,
                         progress=r.top.progress, adaptive=adaptive, describe=r.inputs)


def prepare_method(s: Session, data: Data) -> Distiller:
    """The method on its context (adaptive selector included), with its one-off work done (experts)."""

    r = s.run
    adaptive = None
    if r.method_cls.supports_adaptive:
        adaptive = build_adaptive(r.pruning, data.train)
    elif r.pruning.adaptive:  # bilp before MTT/TESLA/coresets = its static half (BiLP Table 7's BiLP+MTT)
        name = r.cfg.method.name
        data.prune_info["adaptive"] = f"not applied: {name} has no real-batch matching step"
        log.info(f"pruning={r.pruning.name}: {name} has no real-batch matching step, so only "
                 "the static (preemptive) pruning applies")
    distiller: Distiller = r.method_cls(r.method, method_context(s, data, augment=True, adaptive=adaptive))
    with s.timer("prepare"):
        distiller.prepare()
    return distiller


def distill(s: Session, distiller: Distiller) -> dict:
    with s.timer("distill"):
        return distill_loop(distiller, s.run, s.out_dir, s.logger)


def save_outputs(s: Session, distiller: Distiller, train: RealData, info: dict) -> SyntheticSet:
    """synthetic.pt (the documented layout, see dfdistill.run.synthetic) and synthetic.png; returns the set."""
    cfg = s.cfg
    images, labels = distiller.train_set()
    meta = {"method": cfg.method.name, "dataset": cfg.dataset.name, "ipc": cfg.ipc, "distill_key": s.key,
            "backbone": cfg.backbone.name, "pruning": cfg.pruning.name, "iterations": info["iterations"],
            "code_version": code_version()}
    syn = SyntheticSet(images, labels, distiller.eval_lr(), meta=meta)
    save_synthetic(s.out_dir / SYNTHETIC_FILE, syn, train)
    last = info["stopped_at"] + 1 if info.get("stopped_at") is not None else info["iterations"]
    distilled.register(s.cache, s.key, s.out_dir, last)  # a run dir with other eval.* finds it
    grid = save_grid(train.denormalize(images.float()), labels, s.out_dir / "synthetic.png")
    s.logger.image("synthetic/grid", grid)
    return syn


def evaluate(s: Session, data: Data, syn: SyntheticSet, evaluator: Callable[..., list[float]] = evaluate_set) -> dict:
    """The set on the backbone (and the cross-arch list), plus a random real subset under the same protocol.

    `evaluator` is the method's `Distiller.evaluate`: the shared protocol, or the paper's own (RFAD-NN)."""

    r, mcfg = s.run, s.run.method
    ev = resolve_eval(r.eval, mcfg.eval_aug, syn.lr or mcfg.eval_lr, r.dataset.dsa_strategy,
                      bn_convnet=is_convnet_bn(data.factory(0)))  # DC's sets on a ConvNetBN: crop_noise
    eval_aug = build_augment(ev.aug, ev.aug_strategy)
    out: dict[str, Any] = {"ev": ev}
    name, progress = r.cfg.method.name, r.top.progress
    with s.timer("eval"):
        out["accs"] = evaluator(syn.images, syn.labels, data.test, data.factory, ev, eval_aug, seed=r.seed,
                                progress=progress, desc=f"eval[{name}]")
    if r.eval.compare_random and name != "random":
        out["random"] = evaluate_random(s, data, eval_aug, evaluator)
    out["cross"] = {}
    for arch in r.eval.cross_arch:
        f2 = make_model_factory(backbone_config(arch), data.train, s.device)
        ev_a = resolve_eval(r.eval, mcfg.eval_aug, syn.lr or mcfg.eval_lr, r.dataset.dsa_strategy,
                            bn_convnet=is_convnet_bn(f2(0)))  # the reference picks the aug per eval model
        with s.timer(f"eval_{arch}"):
            a = evaluator(syn.images, syn.labels, data.test, f2, ev_a, build_augment(ev_a.aug, ev_a.aug_strategy),
                          seed=r.seed, progress=progress, desc=f"eval[{arch}]")
        out["cross"][arch] = {"accs": a, "mean": mean_std(a)[0], "std": mean_std(a)[1]}
    return out


def evaluate_random(s: Session, data: Data, eval_aug, evaluator: Callable[..., list[float]] = evaluate_set) -> list[float]:
    """A random real subset of the kept rows at the same IPC (protocol lr: the method's, not a learned one)."""

    r, mcfg = s.run, s.run.method
    rnd = RandomSubset(CoresetConfig(name="random", _target_="random"), method_context(s, data))
    rnd.init_state()
    ev_r = resolve_eval(r.eval, mcfg.eval_aug, mcfg.eval_lr, r.dataset.dsa_strategy,
                        bn_convnet=is_convnet_bn(data.factory(0)))
    with s.timer("eval_random"):
        return evaluator(rnd.images, rnd.labels, data.test, data.factory, ev_r, eval_aug, seed=r.seed,
                         progress=r.top.progress, desc="eval[random]")


def method_evaluator(s: Session, data: Data) -> Callable[..., list[float]]:
    """stage=eval: the configured method's `evaluate` (its paper's protocol, e.g. RFAD-NN), without
    preparing or initialising the method."""
    return s.run.method_cls(s.run.method, method_context(s, data)).evaluate


def report(s: Session, data: Data, evals: dict, info: dict, source: Optional[dict] = None) -> dict:
    """The result record: added to results.jsonl and summarised to the logger."""
    cfg, device = s.cfg, s.device
    m, sd = mean_std(evals["accs"])
    extra: dict[str, Any] = {}
    if "random" in evals:
        rm, rs = mean_std(evals["random"])
        extra = {"random_accs": evals["random"], "random_mean": rm, "random_std": rs}
    pruned = bool(cfg.pruning.get("_target_"))
    record = {
        "config_key": s.record_key, "distill_key": s.key, "stage": cfg.stage,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "dataset": cfg.dataset.name, "backbone": cfg.backbone.name,
        "method": (source or {}).get("method") or cfg.method.name, "ipc": cfg.ipc,
        "pruning": cfg.pruning.name, "pruning_ratio": float(cfg.pruning.get("ratio", 0.0)) if pruned else 0.0,
        "seed": cfg.seed, "profile": cfg.profile.name,
        "accs": evals["accs"], "acc_mean": m, "acc_std": sd, "n_eval": len(evals["accs"]),
        **extra, "cross_arch": evals["cross"], "eval": evals["ev"].__dict__, "eval_lr": evals["ev"].lr,
        "n_real_total": data.n_total, "n_real_used": len(data.train), "pruning_info": data.prune_info,
        "stage_seconds": s.timer.seconds, "wall_seconds": sum(s.timer.seconds.values()),
        "sec_per_iter": info.get("sec_per_iter"), "ite_seconds_per_iter": info.get("ite_seconds_per_iter"),
        "iterations": info.get("iterations", (source or {}).get("iterations")), "resumed_from": info.get("resumed_from"),
        "stopped_at": info.get("stopped_at"), "divergence": info.get("divergence"),
        "continued_from": info.get("continued_from"), "distilled_in": info.get("distilled_in"), "source": source,
        "peak_memory_mb": peak_memory_mb(device), "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "compiled": compiled.compiles_on(device),
        "code_version": code_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "output_dir": str(s.out_dir),
    }
    write_results(s.out_dir, record)
    s.logger.summary({"eval/acc_mean": m, "eval/acc_std": sd,
                      **({"eval/random_mean": record["random_mean"]} if "random_mean" in record else {})})
    return record


def run_label(rec: dict) -> str:
    """The method as the summary names it: with its variant (DF-CoLearn's Table 2 rows differ only there),
    so the lines of one sweep are told apart."""
    variant = ((rec.get("config") or {}).get("method") or {}).get("variant")
    return f"{rec['method']}[{variant}]" if variant else rec["method"]


def format_summary(rec: dict) -> str:
    """The human line at the end of `python run.py`."""
    if "acc_mean" not in rec:
        return f"stage {rec.get('stage')} finished"
    line = (f"{run_label(rec)} @ IPC {rec['ipc']} on {rec['dataset']}: "
            f"{100 * rec['acc_mean']:.2f} ± {100 * rec['acc_std']:.2f}% (n={rec['n_eval']})")
    if rec.get("cross_arch"):
        line += "  |  cross-arch: " + ", ".join(f"{arch} {100 * c['mean']:.2f} ± {100 * c['std']:.2f}%"
                                                for arch, c in rec["cross_arch"].items())
    if "random_mean" in rec:
        line += f"  |  random real subset, same protocol: {100 * rec['random_mean']:.2f} ± {100 * rec['random_std']:.2f}%"
    line += f"  |  {rec['wall_seconds']:.0f}s, results: {rec['output_dir']}/results.jsonl"
    return line
