"""What one network pass costs, counted on the real network at its real size without running it.

Why: a plan must know a table's cost before any run exists. Each stage of a job (scoring, experts,
distillation iteration, evaluation epoch) is a number of passes of some network over some rows;
what a pass costs per row is counted here once per (architecture, input shape) on the meta device
(no memory, no compute): FLOPs by `torch.utils.flop_counter.FlopCounterMode`, the number of aten
ops one call dispatches (each is a kernel launch on a GPU, a Python/dispatch round trip on a CPU),
and the activation bytes one row keeps (every op output of the forward: what autograd saves, an
upper bound of the allocator's peak). Three kinds of pass, as in `dfdistill.engine.memory.PASS_FACTOR`:
forward (no grad), backward (forward + backward, i.e. a training step) and double (a create_graph
gradient that is itself differentiated: gradient matching's synthetic side, MTT's unrolled steps).
Besides the arithmetic, each kind's bytes written per row (every op output: the memory traffic that
bounds normalisation, activation and pooling layers, which have almost no FLOPs), and the ops of
building a fresh initialised network (`init`: DC and DM draw one per iteration, the evaluation one
per model). `augment_cost` counts the same (ops per call, bytes per row) for the augmentation that
runs in the stages, on the real augmentation code. Both kinds of count are kept in `pass_costs.json`
under a fingerprint of the code they count, so a plan normally runs no count at all.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from dfdistill.models import build_model
from dfdistill.methods.matching import gradient_distance
from dfdistill.data.augment import build_augment

COUNTED_FILE = Path(__file__).with_name("pass_costs.json")  # counts already made, for this code (fingerprint)
ROWS = 4  # rows of the probe batch (per-row figures are per this many / ROWS; FLOPs are linear in rows)
KINDS = ("forward", "backward", "double")


@dataclass(frozen=True)
class PassCost:
    """Per-row FLOPs and per-call op counts of each kind of pass, and the sizes memory needs."""

    flops: dict[str, float]  # kind -> FLOPs per row
    ops: dict[str, int]  # kind -> aten ops per call (independent of the rows in the call); "init": one build
    act_bytes: float  # forward activation bytes per row (every op output)
    param_bytes: int
    params: int
    bytes: dict[str, float] = field(default_factory=dict)  # kind -> bytes all ops of the pass write per row


_seen: dict[str, PassCost] = {}  # every count this process asked for (write_counted keeps them)


class _Ops(TorchDispatchMode):
    """Counts dispatched ops and the bytes of their outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.n += 1
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.bytes += t.numel() * t.element_size()
        return out


def _build(name: str, options: tuple, channels: int, classes: int, size: int) -> nn.Module:
    with torch.device("meta"):
        net = build_model(name, channels, classes, size, **dict(options))
    return net.train()


def _run(net: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> None:
    params = [p for p in net.parameters() if p.requires_grad]
    if kind == "forward":
        with torch.no_grad():
            net(x)
        return
    for p in params:
        p.grad = None
    if kind == "backward":  # a training step: loss, backward, the optimiser's update
        nn.functional.cross_entropy(net(x), y).backward()  # .backward: FlopCounterMode's module tracker refuses autograd.grad
        torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=False).step()
        return

    xs = x.detach().requires_grad_(True)
    with warnings.catch_warnings():  # the grad <-> param cycle is broken below
        warnings.simplefilter("ignore")
        nn.functional.cross_entropy(net(xs), y).backward(create_graph=True)
        # gradient matching's own layer-wise distance (DC's default metric) to a reference gradient
        names = [n for n, p in net.named_parameters() if p.requires_grad]
        loss = gradient_distance({n: torch.zeros_like(p.grad) for n, p in zip(names, params)},
                                 {n: p.grad for n, p in zip(names, params)}, "ours")
        loss.backward(inputs=[xs])
    for p in params:
        p.grad = None


def count_pass_cost(name: str, options: tuple, channels: int, classes: int, size: int) -> PassCost:
    """Count on the meta device (about a second of CPU per shape, the first one more)."""
    # imported here for its cost: the FLOP counter pulls in more of torch (~0.1 s, and its first run
    # torch._dynamo, ~1.4 s), which a plan reading pass_costs.json never needs
    from torch.utils.flop_counter import FlopCounterMode

    net = _build(name, options, channels, classes, size)
    x = torch.empty((ROWS, channels, size, size), device="meta")
    y = torch.zeros((ROWS,), dtype=torch.long, device="meta")
    flops, ops, nbytes = {}, {}, {}
    for kind in KINDS:
        counter, rec = FlopCounterMode(display=False), _Ops()
        with counter, rec:
            _run(net, x, y, kind)
        flops[kind] = counter.get_total_flops() / ROWS
        ops[kind] = rec.n
        nbytes[kind] = rec.bytes / ROWS
    with _Ops() as rec:  # what model_factory(seed) dispatches: parameter creation and initialisation
        _build(name, options, channels, classes, size)
    ops["init"], flops["init"], nbytes["init"] = rec.n, 0.0, 0.0
    pbytes = sum(p.numel() * p.element_size() for p in net.parameters())
    return PassCost(flops, ops, nbytes["forward"], pbytes, sum(p.numel() for p in net.parameters()), nbytes)


AUG_PROBE_DRAWS = 8  # fixed seeds 0..7: a family is drawn per call, so the ops are averaged over draws
AUG_PROBE_CLASSES = 10  # class draws: the ops follow the distinct family combinations (<= families), not C


def augment_cost(kind: str, strategy: Optional[str], channels: int, size: int, form: str = "batch") -> PassCost:
    """Ops per call and bytes per row of one augmentation call, counted on the real augmentation code
    (dfdistill.data.augment) over a small CPU batch at the real image size, averaged over fixed draws.

    form "batch": `augment(x, seed)` (training steps: evaluation, experts, DC's inner loop, MTT's
    student steps), "siamese": the same with one draw for the batch (IDC's matching), "class": one
    per-class siamese draw applied to a real and a synthetic batch (DC/DSA/DM's matching step; one
    call = the pair). The result is a PassCost with the one kind "aug" (no FLOPs: elementwise work).
    Kept like the network counts (`pass_cost`): counted once per process, and not at all where
    pass_costs.json holds the count made by this code."""
    key = json.dumps(["augment", kind, strategy, channels, size, form])
    if key not in _seen:
        _seen[key] = counted().get(key) or count_augment_cost(kind, strategy, channels, size, form)
    return _seen[key]


def count_augment_cost(kind: str, strategy: Optional[str], channels: int, size: int, form: str) -> PassCost:
    """Run the augmentation over a small CPU batch under the op counter (what `augment_cost` keeps)."""
    aug = build_augment(kind, strategy)
    if kind in (None, "none"):
        return PassCost({"aug": 0.0}, {"aug": 0}, 0.0, 0, 0, {"aug": 0.0})
    gen = torch.Generator().manual_seed(0)
    k, per = AUG_PROBE_CLASSES, 2
    x = torch.rand((k, per, channels, size, size), generator=gen) * 2 - 1
    rows = k * per * (2 if form == "class" else 1)
    n = b = 0
    for seed in range(AUG_PROBE_DRAWS):
        with _Ops() as rec:
            if form == "class":
                draw = aug.class_draw(seed, k)
                draw.apply(x)
                draw.apply(x)
            else:
                aug(x.reshape(k * per, channels, size, size), seed=seed, siamese=form == "siamese")
        n, b = n + rec.n, b + rec.bytes
    calls = AUG_PROBE_DRAWS
    return PassCost({"aug": 0.0}, {"aug": round(n / calls)}, 0.0, 0, 0, {"aug": b / (calls * rows)})


def fingerprint() -> str:
    """What a count depends on: this file, the backbone code (dfdistill/models/), the augmentation
    code (dfdistill/data/augment/) and torch's version."""
    h = hashlib.sha256(version("torch").encode())
    package = Path(__file__).resolve().parents[1]
    code = sorted((package / "models").glob("*.py")) + sorted((package / "data" / "augment").glob("*.py"))
    for path in [Path(__file__)] + code:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _key(name: str, options: tuple, channels: int, classes: int, size: int) -> str:
    return json.dumps([name, [list(kv) for kv in options], channels, classes, size])


@lru_cache(maxsize=1)
def counted() -> dict[str, PassCost]:
    """The committed counts (pass_costs.json) when they were made by this code, else none."""
    if not COUNTED_FILE.exists():
        return {}
    raw = json.loads(COUNTED_FILE.read_text())
    if raw.get("fingerprint") != fingerprint():
        return {}
    return {k: PassCost(**v) for k, v in raw["costs"].items()}


def pass_cost(name: str, options: tuple, channels: int, classes: int, size: int) -> PassCost:
    """Counted once per (backbone, options, input shape, classes), and not at all where
    pass_costs.json already holds the count made by this very code: planning stays fast (a count
    is deterministic, so a kept one is the same bytes as a fresh one; tests/unit/sweeps checks it)."""
    key = _key(name, options, channels, classes, size)
    if key not in _seen:
        _seen[key] = counted().get(key) or count_pass_cost(name, options, channels, classes, size)
    return _seen[key]


def write_counted(path: Optional[Path] = None) -> Path:
    """Keep every count this process made or read (with the code's fingerprint) for later plans."""
    path = path or COUNTED_FILE
    costs = {k: asdict(v) for k, v in sorted(_seen.items())}
    path.write_text(json.dumps({"fingerprint": fingerprint(), "costs": costs}, indent=1, sort_keys=True) + "\n")
    return path


def backbone_cost(bcfg: Any, channels: int, classes: int, size: int) -> PassCost:
    """`pass_cost` of a backbone config node (name + constructor options)."""
    from omegaconf import OmegaConf

    opts = {k: v for k, v in OmegaConf.to_container(bcfg, resolve=True).items() if k not in ("name", "_target_")}
    return pass_cost(str(bcfg.name), tuple(sorted((k, _hashable(v)) for k, v in opts.items())),
                     int(channels), int(classes), int(size))


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
