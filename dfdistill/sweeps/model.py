"""Cost and memory of a job from its resolved config alone (no earlier run needed).

Why: `--plan` must say what a table costs and whether each job fits the GPU before anything runs.
A job is a list of `Work` items, one per stage: passes of a network over rows (`passes.py` counts
what one row and one call cost on the real network at its real size), times the steps the config
plans (scoring trials x epochs, experts x epochs, iterations, evaluation models x epochs), plus what
runs around the passes and is counted the same way on the real code: the augmentation of every
augmented batch (`passes.augment_cost`) and one network build per fresh network (DC/DM/IDC per
iteration, evaluation per model, experts per expert, scoring per trial). Time on a
device (`devices.yaml`) = (FLOPs / peak FLOP/s + bytes written / memory bandwidth) / efficiency +
ops x op time: arithmetic, memory traffic (normalisation, activation, pooling and augmentation
layers have bytes but almost no FLOPs; at small widths they are most of the time) and dispatch,
with ONE efficiency factor per device. Memory =
the largest single call (activations x the pass kind's factor from dfdistill.engine.memory) + parameters,
gradients and optimiser state + the synthetic set; passes a method splits by class (DC, DM, IDC
real side) are counted at the size the memory budget lets them have (dfdistill.engine.memory), passes it
cannot split (MTT's unrolled student steps) at full size: those are the jobs that do not fit.
The real data split itself is not counted (`dataset.storage: auto` keeps it on the host when it
does not fit the device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf

from dfdistill.config import plain_nodes
from dfdistill.config.plain_view import PlainView
from dfdistill.engine.memory import PASS_FACTOR
from dfdistill.sweeps.passes import PassCost, augment_cost, backbone_cost, pass_cost
from dfdistill.core.errors import ConfigError

DEVICES_FILE = Path(__file__).with_name("devices.yaml")
# (train rows, test rows) of each dataset's standard split (digits: the embedded 80/20 split)
SIZES = {"cifar10": (50000, 10000), "cifar10_jpeg": (50000, 10000), "cifar100": (50000, 10000),
         "svhn": (73257, 26032), "mnist": (60000, 10000), "fashion_mnist": (60000, 10000),
         "tinyimagenet": (100000, 10000), "imagenet1k": (1281167, 50000), "digits": (1437, 360)}
GM_METHODS = ("dc", "dsa", "dfcolearn", "edd_dsa")  # DC's loops (per-class gradient matching)
TRAJECTORY = ("mtt", "tesla")


@dataclass(frozen=True)
class Device:
    name: str
    peak_tflops: float
    memory_gb: float
    efficiency: float
    op_us: float
    source: str
    calibrated: str
    mem_gbps: float = 0.0  # memory bandwidth (GB/s); 0: the bytes term is not counted

    @property
    def flops_per_s(self) -> float:
        return self.peak_tflops * 1e12 * self.efficiency

    @property
    def bytes_per_s(self) -> float:
        return self.mem_gbps * 1e9 * self.efficiency

    def seconds(self, flops: float, nbytes: float, ops: float) -> float:
        """Arithmetic + memory traffic (both at the one efficiency) + dispatch."""
        traffic = nbytes / self.bytes_per_s if self.mem_gbps else 0.0
        return flops / self.flops_per_s + traffic + ops * self.op_us * 1e-6


@lru_cache(maxsize=None)
def devices() -> dict[str, Device]:
    raw = OmegaConf.to_container(OmegaConf.load(DEVICES_FILE))
    return {k: Device(k, **v) for k, v in raw.items()}


def device(name: str) -> Device:
    if name not in devices():
        raise ConfigError(f"unknown --gpu {name!r}; use one of {', '.join(devices())}")
    return devices()[name]


@dataclass
class Work:
    """`rows` rows through `net` in `calls` calls of `kind`; `call_rows` rows in the largest call."""

    stage: str
    net: PassCost
    kind: str
    rows: float
    calls: float
    call_rows: float
    splittable: bool = True  # the method splits this call by class when it does not fit (memory.py)


@dataclass
class JobCost:
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds on the device
    flops: float = 0.0
    peak_bytes: float = 0.0
    fits: bool = True
    why: str = ""  # what sets the peak (and why it does not fit)

    @property
    def seconds(self) -> float:
        return sum(self.stages.values())


def _n(x: Any, default: int = 0) -> int:
    return default if x is None else int(x)


def data_sizes(cfg: Any) -> tuple[int, int, int]:
    """(train rows kept after pruning, train rows before, test rows)."""
    ds = cfg.dataset
    C = int(ds.num_classes)
    train, test = SIZES.get(str(ds.name), (1000 * C, 100 * C))
    if ds.get("max_train_per_class") is not None:
        train = min(train, C * int(ds.max_train_per_class))
    if ds.get("max_test") is not None:
        test = min(test, int(ds.max_test))
    p = cfg.get("pruning") or {}
    kept = train
    if p.get("stratum") is not None:
        kept = train // max(1, int(p.get("n_strata", 10)))
    elif p.get("_target_") and p.get("ratio"):
        kept = int(train * (1.0 - float(p.ratio)))
    return max(kept, C), train, test


def n_synthetic(cfg: Any) -> int:
    """Images the evaluation trains on (IDC/IDM decode f x f per stored image)."""
    C, ipc, m = int(cfg.dataset.num_classes), int(cfg.ipc), cfg.method
    if str(m.name) == "whole":
        return data_sizes(cfg)[0]
    return C * ipc * (int(m.get("factor", 1) or 1) ** 2 if str(m.name) in ("idc", "idm", "edd") else 1)


def epochs_rows(stage: str, net: PassCost, epochs: float, n: int, batch: int, kind: str = "backward",
                aug: Optional[PassCost] = None) -> list[Work]:
    """`epochs` passes over n rows in batches of `batch`; when the stage augments, each training step
    (`backward`) also runs one augmentation call on its batch."""
    batch = max(1, min(batch, n))
    steps = epochs * math.ceil(n / batch)
    out = [Work(stage, net, kind, epochs * n, steps, batch)]
    if kind == "backward" and aug is not None:
        out.append(Work(stage, aug, "aug", epochs * n, steps, batch))
    return out


def inits(stage: str, net: PassCost, n: float) -> Work:
    """`n` fresh networks built and initialised (model_factory calls)."""
    return Work(stage, net, "init", 0, n, 0)


def stage_augment(cfg: Any, kind: Optional[str], form: str = "batch") -> Optional[PassCost]:
    """What one augmentation call costs at this dataset's size, or None without augmentation."""
    if kind in (None, "none"):
        return None
    ds = cfg.dataset
    strategy = str(ds.get("dsa_strategy") or "") or None
    return augment_cost(kind, strategy, int(ds.channels), int(ds.image_size), form)


def eval_augment(cfg: Any) -> tuple[Optional[str], Optional[str]]:
    """(kind, strategy) of the evaluation's augmentation, as evaluation.protocol.resolve_eval picks it."""
    ev, m = cfg.eval, cfg.method
    kind = ev.get("aug") or m.get("eval_aug") or "dsa"
    if kind == "none":
        return None, None
    strategy = ev.get("aug_strategy")
    if strategy is None:
        dsa = str(cfg.dataset.get("dsa_strategy") or "color_crop_cutout_flip_scale_rotate")
        strategy = {"dc": "crop_scale_rotate", "idc": "_".join(f for f in dsa.split("_") if f != "cutout")}.get(kind, dsa)
    return str(kind), str(strategy)


def distill_work(cfg: Any, net: PassCost, kept: int) -> list[Work]:
    """The distillation loop: per-iteration passes x iterations (method by method)."""
    m, name = cfg.method, str(cfg.method.name)
    C, ipc = int(cfg.dataset.num_classes), int(cfg.ipc)
    it = _n(m.get("iterations"))
    per_class = max(1, kept // C)
    br = min(_n(m.get("batch_real"), 256), per_class)
    dsa = bool(m.get("dsa", False))
    out: list[Work] = []
    if name in GM_METHODS or name == "edd_dsa":
        outer, inner = _n(m.get("outer_loop"), 1), _n(m.get("inner_loop"), 1)
        out.append(inits("distill", net, it))  # a fresh network per iteration
        out.append(Work("distill", net, "backward", it * outer * C * br, it * outer * C, C * br))
        out.append(Work("distill", net, "double", it * outer * C * ipc, it * outer * C, C * ipc))
        if dsa:  # one per-class siamese draw per matching step, applied to the real and synthetic batch
            out.append(Work("distill", stage_augment(cfg, "dsa", "class"), "aug", it * outer * C * (br + ipc),
                            it * outer, C * (br + ipc)))
        n_syn, bt = C * ipc, _n(m.get("batch_train"), 256)
        if outer > 1:
            out += epochs_rows("distill", net, it * (outer - 1) * inner, n_syn, bt,
                               aug=stage_augment(cfg, "dsa") if dsa else None)
    elif name in ("dm", "idm"):
        f2 = (_n(m.get("factor"), 1) ** 2) if name == "idm" else 1
        out.append(inits("distill", net, it))
        out.append(Work("distill", net, "forward", it * C * br, it, C * br))
        out.append(Work("distill", net, "backward", it * C * ipc * f2, it, C * ipc * f2))
        if dsa:
            out.append(Work("distill", stage_augment(cfg, "dsa", "class"), "aug", it * C * (br + ipc * f2), it,
                            C * (br + ipc * f2)))
        if name == "idm":
            steps = _n(m.get("fetch_net_num"), 2) * _n(m.get("model_train_steps"), 10)
            tb = _n(m.get("trained_bs"), 256)
            out.append(Work("distill", net, "backward", it * steps * tb, it * steps, tb, False))
    elif name in TRAJECTORY:
        n_syn = C * ipc
        bs = min(_n(m.get("batch_syn"), n_syn) or n_syn, n_syn)
        steps = _n(m.get("syn_steps"), 20)
        if name == "mtt":  # the whole unrolled student graph is one call: it cannot be split
            out.append(Work("distill", net, "double", it * steps * bs, it * steps, steps * bs, False))
        else:  # TESLA: detached forward steps, then one step's graph at a time
            out.append(Work("distill", net, "backward", it * steps * bs, it * steps, bs, False))
            out.append(Work("distill", net, "double", it * steps * bs, it * steps, bs, False))
            if m.get("soft_label"):
                out.append(Work("distill", net, "forward", it * n_syn, it, n_syn))
        if dsa:  # every student step augments its batch (TESLA: again in the second, graph-keeping pass)
            twice = 1 if name == "mtt" else 2
            out.append(Work("distill", stage_augment(cfg, "dsa"), "aug", twice * it * steps * bs, twice * it * steps, bs))
    elif name in ("idc", "edd"):
        steps, f2 = _n(m.get("match_steps"), 100), _n(m.get("factor"), 2) ** 2
        syn = min(ipc * f2, _n(m.get("batch_syn_max"), 128))
        out.append(inits("distill", net, it))
        out.append(Work("distill", net, "backward", it * steps * C * br, it * steps * C, br, False))
        out.append(Work("distill", net, "double", it * steps * C * syn, it * steps * C, syn, False))
        if dsa:  # one IDC-DiffAug draw per class and step over its real batch and its stored images
            out.append(Work("distill", augment_cost("idc", "color_crop_cutout", int(cfg.dataset.channels),
                                                    int(cfg.dataset.image_size), "siamese"),
                            "aug", it * steps * C * (br + ipc), it * steps * C, br + ipc))
        n_data = _n(m.get("n_data"), 2000)  # rows drawn with replacement: n_data whatever the split's size
        if steps > 1 and n_data:  # the network trains between matching steps, not after the last one
            net_aug = None if not m.get("net_aug") else augment_cost(
                "idc", str(m.net_aug), int(cfg.dataset.channels), int(cfg.dataset.image_size))
            batches = it * (steps - 1) * math.ceil(n_data / 64)
            out += epochs_rows("distill", net, batches, 64, 64, aug=net_aug)
    elif name == "rfad":  # its own random-feature nets (methods/rfad.py), not the backbone RFAD-NN evaluates
        feat = pass_cost("convnet_gaussian", (("depth", _n(m.get("feature_depth"), 3)),
                                              ("width", _n(m.get("feature_width"), 256))),
                         int(cfg.dataset.channels), 1, int(cfg.dataset.image_size))
        models, rows = _n(m.get("n_models"), 8), _n(m.get("batch_real"), 1280) * _n(m.get("n_batches"), 4)
        out.append(inits("distill", feat, it * models))  # fresh nets every iteration
        out.append(Work("distill", feat, "forward", it * models * rows, it * models, rows))
        out.append(Work("distill", feat, "backward", it * models * C * ipc, it * models, C * ipc))
        vm, checks = _n(m.get("valid_models"), 16), it // max(1, _n(m.get("valid_every"), 40)) + 1
        valid = _n(m.get("valid_per_class"), 500) * C  # drawn with replacement; its features once, the set's every check
        out.append(Work("distill", feat, "forward", vm * valid, vm, valid))
        out.append(Work("distill", feat, "forward", checks * vm * C * ipc, checks * vm, C * ipc))
    elif name in ("herding", "kcenter"):
        out += epochs_rows("distill", net, 1, kept, 256, "forward")
    return out


def job_work(cfg: Any) -> list[Work]:
    """Every stage's passes for the resolved config `cfg`."""
    ds = cfg.dataset
    ch, C, size = int(ds.channels), int(ds.num_classes), int(ds.image_size)
    bcfg = cfg.backbone  # a plain view's (Job.view) as the node backbone_cost reads (passes.py stays as counted)
    net = backbone_cost(plain_nodes.create(bcfg.data) if isinstance(bcfg, PlainView) else bcfg, ch, C, size)
    kept, train, test = data_sizes(cfg)
    m, p, ev = cfg.method, cfg.get("pruning") or {}, cfg.eval
    work: list[Work] = []
    scores_only = str(cfg.get("stage", "all")) == "scores"
    if p.get("_target_") and str(p.get("name")) in ("loss", "bilp", "ite") and (
            p.get("ratio") or p.get("stratum") is not None or scores_only):
        trials, epochs = _n(p.get("trials"), 1), _n(p.get("train_epochs"), 1)
        work.append(inits("pruning", net, trials))
        work += epochs_rows("pruning", net, trials * epochs, train, _n(p.get("batch_size"), 256))
        reads = len(p.get("epochs") or [1])
        work += epochs_rows("pruning", net, trials * reads, train, 512, "forward")
    if str(m.name) in TRAJECTORY:
        experts = _n(m.get("num_experts"), 100)
        work.append(inits("prepare", net, experts))
        work += epochs_rows("prepare", net, experts * _n(m.get("expert_train_epochs"), 50), kept,
                            _n(m.get("batch_train"), 256), aug=stage_augment(cfg, "dsa") if m.get("dsa") else None)
    work += distill_work(cfg, net, kept)
    last = {"scores": "pruning", "experts": "prepare", "distill": "distill"}.get(str(cfg.get("stage", "all")))
    if last is not None:  # a run that stops after that stage (stage=scores: BiLP Fig. 4)
        order = ("pruning", "prepare", "distill")
        return [w for w in work if w.stage in order[: order.index(last) + 1]]
    n_syn = n_synthetic(cfg)
    aug_kind, aug_strategy = eval_augment(cfg)
    epochs = _n(ev.get("epochs"), 1000 if aug_kind else 300)
    epochs += 1 if str(ev.get("schedule", "half")) == "half" else 0  # DC's loop runs Epoch + 1 epochs
    models = _n(ev.get("num_eval"), 1)
    aug = None if aug_kind is None else augment_cost(aug_kind, aug_strategy, ch, size)
    for stage in ("eval",) + (("eval_random",) if ev.get("compare_random") and str(m.name) != "whole" else ()):
        n = n_syn if stage == "eval" else C * int(cfg.ipc)
        work.append(inits(stage, net, models))
        if str(ev.get("name")) == "rfad_nn":
            work += rfad_nn_work(cfg, stage, net, models, n, test)
            continue
        work += epochs_rows(stage, net, models * epochs, n, _n(ev.get("batch_size"), 256), aug=aug)
        work += epochs_rows(stage, net, models, test, _n(ev.get("test_batch_size"), 512), "forward")
    return work


def rfad_nn_work(cfg: Any, stage: str, net: PassCost, models: int, n: int, test: int) -> list[Work]:
    """RFAD-NN (evaluation/finite_nn.py): `eval.epochs` *steps* of one batch each, the frozen init
    network's forward on the same batch (centring), the validation subset through both networks every
    `nn_valid_every` steps, and the test split through both at the end (patience may stop it sooner)."""
    ev, m = cfg.eval, cfg.method
    steps, batch = _n(ev.get("epochs"), 1000), min(_n(ev.get("batch_size"), 256), n)
    valid = _n(m.get("valid_per_class"), 500) * int(cfg.dataset.num_classes)
    checks = steps // max(1, _n(m.get("nn_valid_every"), 100)) + 1
    twice = 2 if m.get("nn_centering", True) else 1
    tb = _n(ev.get("test_batch_size"), 512)
    out = [Work(stage, net, "backward", models * steps * batch, models * steps, batch)]
    if twice == 2:
        out.append(Work(stage, net, "forward", models * steps * batch, models * steps, batch))
    out += epochs_rows(stage, net, models * checks * twice, valid, tb, "forward")
    out += epochs_rows(stage, net, models * twice, test, tb, "forward")
    return out


def estimate(cfg: Any, dev: Device) -> JobCost:
    """Seconds per stage on `dev`, total FLOPs, peak memory and whether it fits `dev`."""
    work = job_work(cfg)
    out = JobCost()
    share = float((cfg.get("memory") or {}).get("device_memory_fraction", 0.5))
    budget = share * dev.memory_gb * 1e9  # what one split pass may plan for (dfdistill/engine/memory.py)
    fixed, fixed_why = 0.0, ""
    C = int(cfg.dataset.num_classes)
    img = int(cfg.dataset.channels) * int(cfg.dataset.image_size) ** 2 * 4
    for w in work:
        flops = w.rows * w.net.flops.get(w.kind, 0.0)
        out.flops += flops
        out.stages[w.stage] = out.stages.get(w.stage, 0.0) + dev.seconds(
            flops, w.rows * w.net.bytes.get(w.kind, 0.0), w.calls * w.net.ops[w.kind])
        if w.kind not in PASS_FACTOR:  # augmentation, network builds: no activation peak of their own
            continue
        per_row = PASS_FACTOR[w.kind] * w.net.act_bytes
        need = w.call_rows * per_row
        if w.splittable and need > budget:  # split by class down to the budget (at least one class)
            need = max(budget, need / C)
        if str(cfg.method.name) in TRAJECTORY and w.kind == "double":
            need += _n(cfg.method.get("syn_steps"), 20) * w.net.param_bytes  # the student's parameter copies
        if need > fixed:
            fixed, fixed_why = need, f"{w.stage} {w.kind} pass of {w.call_rows:g} rows"
    nets = [w.net for w in work if w.kind in PASS_FACTOR]
    state = 4 * nets[-1].param_bytes if nets else 0  # parameters, gradients, momentum, one copy
    syn = 3 * n_synthetic(cfg) * img if str(cfg.method.name) != "whole" else 0  # images, grads, optimiser
    out.peak_bytes = fixed + state + syn
    out.fits = out.peak_bytes <= dev.memory_gb * 1e9
    out.why = fixed_why + ("" if out.fits else f": needs {out.peak_bytes / 1e9:.0f} GB > {dev.memory_gb:g} GB")
    return out


def fmt_hours(s: Optional[float]) -> str:
    if s is None:
        return "?"
    h = s / 3600
    return f"{h:.2f} h" if h < 10 else f"{h:,.0f} h"


def fmt_gb(b: float) -> str:
    return f"{b / 1e9:.1f} GB" if b >= 1e8 else f"{b / 1e6:.0f} MB"
