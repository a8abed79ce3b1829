"""What every distillation method shares: config fields, run context, synthetic-set state.

A `Distiller` owns the synthetic set and its optimisers; the pipeline owns the loop, checkpoints,
progress and logging, so resume/NaN handling is written once. One `step()` is one *outer
iteration* in the reference code's sense (e.g. DC: a fresh network and `outer_loop` image updates).
Coreset baselines are distillers with zero iterations whose `init_state` selects real images.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import torch
from omegaconf import MISSING
from torch import Tensor, nn

from dfdistill.core.artifacts import ArtifactCache
from dfdistill.data.augment.class_draw import ClassDraw
from dfdistill.data.augment import build_augment
from dfdistill.data.real import RealData
from dfdistill.core.errors import ConfigError, DataError
from dfdistill.engine.memory import classes_per_pass
from dfdistill.methods.chunks import ClassBatch
from dfdistill.methods.sampling import device_generator, per_class_rows
from dfdistill.evaluation.protocol import evaluate_set


@dataclass(frozen=True)
class ProfileCap:
    """A method field a profile shortens: `min(method.<field>, profile.<profile_key>)` when the profile
    sets that key. With `by_field`, the cap is the method's own (already capped) `<by_field>` instead
    (MTT's expert span must fit experts the profile shortened)."""

    field: str
    profile_key: str
    by_field: Optional[str] = None


@dataclass
class MethodConfig:
    # What a profile (cpu, smoke) caps, in order; a method with its own expensive knobs extends this, so
    # config/resolve.apply_profile needs no list of every method's fields.
    profile_caps: ClassVar[tuple[ProfileCap, ...]] = (ProfileCap("iterations", "iterations"),
                                                       ProfileCap("batch_real", "batch_real"))
    name: str = MISSING
    # Not written in the YAMLs: the class comes from the method registry by `name`. Kept as an optional
    # key so a stored config that spells it still loads (it must then name the registered class), and
    # identities hash the registered path here as they did when the YAMLs spelled it (config/resolve).
    _target_: Optional[str] = None
    iterations: int = 1000
    lr_img: float = 0.1
    init: str = "real"  # real | noise
    batch_real: int = 256
    dsa: bool = True  # siamese augmentation inside the matching objective
    eval_aug: str = "dsa"  # augmentation the evaluation protocol uses for this method's sets
    eval_lr: float = 0.01
    eval_protocol: str = "default"  # conf/eval/<protocol>.yaml applies unless the user types eval=...
    recipe: str = "paper"  # paper: the row of dfdistill/recipes for (dataset, IPC) fills unset values | none

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ConfigError(f"method.iterations must be >= 0, got {self.iterations}")
        if self.init not in ("real", "noise", "mix"):
            raise ConfigError(f"method.init must be real|noise|mix, got {self.init!r}")
        if self.lr_img <= 0:
            raise ConfigError(f"method.lr_img must be > 0, got {self.lr_img}")
        if self.batch_real <= 0:
            raise ConfigError(f"method.batch_real must be > 0, got {self.batch_real}")
        if self.recipe not in ("paper", "none"):
            raise ConfigError(f"method.recipe must be paper|none, got {self.recipe!r}")
        if self.eval_aug not in ("dsa", "idc", "dc", "none"):
            raise ConfigError(f"method.eval_aug must be dsa|idc|dc|none, got {self.eval_aug!r}")


def check_positive(cfg: Any, keys: tuple[str, ...]) -> None:
    """One-line ConfigError naming the first of `keys` (config fields) that is below 1."""
    bad = [k for k in keys if getattr(cfg, k) < 1]
    if bad:
        raise ConfigError(f"method.{bad[0]} must be >= 1, got {getattr(cfg, bad[0])}")


@dataclass
class DistillContext:
    """Everything a method may use, built once by the pipeline."""

    real: RealData  # the (statically pruned) real training split on the device
    ipc: int
    model_factory: Callable[[int], nn.Module]  # seed -> freshly initialised backbone on the device
    augment: Any  # siamese-capable DSA (dfdistill.data.augment) or NoAugment
    device: torch.device
    seed: int
    cache: ArtifactCache
    out_dir: Path
    progress: bool = True
    adaptive: Any = None  # in-loop selector (BiLP ITE) or None; the pipeline checkpoints it and announces iterations
    # what produced `real` and `model_factory` ({'dataset': ..., 'backbone': ...} config dicts), so a
    # method's cached artifacts (expert trajectories) can be keyed by it; empty outside the pipeline
    describe: dict = field(default_factory=dict)


def build_context(real: RealData, model_factory: Callable[[int], nn.Module], *, ipc: int, seed: int,
                  device: torch.device, cache: ArtifactCache, out_dir: Path, augment: bool = False,
                  dsa_strategy: Optional[str] = None, progress: bool = False, adaptive: Any = None,
                  describe: Optional[dict] = None) -> DistillContext:
    """The one way a method's context is built (pipeline, bench harness, memory bench). `augment`: the
    method's siamese DSA with `dsa_strategy` (None: the standard one); without it the context only
    draws and evaluates (the random real baseline, stage=eval's evaluator)."""
    return DistillContext(real=real, ipc=ipc, model_factory=model_factory,
                          augment=build_augment("dsa", dsa_strategy) if augment else None, device=device, seed=seed,
                          cache=cache, out_dir=out_dir, progress=progress, adaptive=adaptive, describe=describe or {})


SAMPLE_SEED_OFFSET = 0x5EED_5A4D


def draw_seed(gen: torch.Generator) -> int:
    return int(torch.randint(0, 2**31 - 1, (1,), generator=gen))


def class_major_labels(num_classes: int, ipc: int, device: torch.device) -> Tensor:
    return torch.arange(num_classes, device=device).repeat_interleave(ipc)


def init_synthetic(real: RealData, ipc: int, init: str, gen: torch.Generator) -> Tensor:
    """Class-major (C*ipc, C, H, W): random real images of each class, or N(0,1) noise."""
    C = real.num_classes
    if init == "noise":
        return torch.randn((C * ipc, real.channels, real.image_size, real.image_size), generator=gen).to(real.device)
    small = [c for c, n in enumerate(real.class_counts()) if n < ipc]
    if small:
        raise DataError(f"classes {small[:5]} have fewer than ipc={ipc} real samples after pruning; "
                        f"lower pruning.ratio or ipc, or use method.init=noise")
    return torch.cat([real.sample_class(c, ipc, gen) for c in range(C)]).detach().clone()


def class_rows(real: RealData, c: int, active: Optional[Tensor] = None) -> Tensor:
    """Row positions of class c in `real`, restricted to `active` (a (N,) bool mask) when given."""
    ix = real.class_indices[c]
    return ix if active is None else ix[active[ix]]


def per_class_batch(real: RealData, n: int, gen: torch.Generator,
                    active: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Optional[Tensor], Tensor]:
    """min(n, n_c) random rows of every class as (C, B, ...) tensors, B = min(n, max_c n_c).

    Classes with fewer rows are padded by repeating rows with weight 0, so the batch stays
    rectangular (vmappable) and padded rows contribute nothing. weights is None when no padding.
    `active` restricts the draw to those rows (EDD's filtered pool); indices stay rows of `real`.
    The rows are drawn for all classes in one device op (`sampling.per_class_rows`; `gen` lives on
    real.device). Materialises the whole batch: the distillers use `ImageDistiller.real_classes`,
    which builds it one class chunk at a time."""
    idx, w = per_class_rows(real, n, gen, active)
    return real.batch(idx), real.labels[idx], w, idx


class Distiller(ABC):
    """Base class: holds `cfg`, `ctx`, the synthetic images/labels and an RNG for resumability."""

    config_cls: type = MethodConfig
    # True where the method's real batches go through ctx.adaptive.weights (BiLP ITE) with row indices
    # into ctx.real and its own MetaObjective; config
    # validation (resolve_config) refuses in-loop pruning for the others rather than skipping it
    supports_adaptive: bool = False

    def __init__(self, cfg: MethodConfig, ctx: DistillContext):
        self.cfg = cfg
        self.ctx = ctx
        self.gen = torch.Generator().manual_seed(ctx.seed)
        # per-class row draws run on the device (methods/sampling.py): one generator there, made once,
        # seeded apart from `gen` so the two streams are not the same sequence; checkpointed with it
        self.sample_gen = device_generator(ctx.device, ctx.seed + SAMPLE_SEED_OFFSET)
        self.images: Optional[Tensor] = None
        self.labels: Optional[Tensor] = None

    @property
    def iterations(self) -> int:
        return self.cfg.iterations

    @property
    def num_classes(self) -> int:
        return self.ctx.real.num_classes

    def real_rows(self, fresh: Callable[[], tuple[Tensor, Optional[Tensor]]]) -> tuple[Tensor, Optional[Tensor]]:
        """The (rows, padding weights) of one matching call: `fresh()`, or -- under lazy in-loop selection
        (BiLP ITE) between refreshes -- the batch the selector selected at the last refresh."""
        sel = self.ctx.adaptive
        return fresh() if sel is None else sel.draw(fresh)

    def prepare(self) -> None:
        """Heavy one-off work before the loop (e.g. expert trajectories). Default: nothing."""

    @abstractmethod
    def init_state(self) -> None:
        """Create the synthetic set and optimisers (called once, before a possible resume)."""

    def step(self, it: int) -> dict[str, Tensor]:
        """One outer iteration; returns at least {'loss': scalar tensor}."""
        raise NotImplementedError

    def train_set(self) -> tuple[Tensor, Tensor]:
        """The images/labels the evaluation networks train on (decoded for parameterised sets)."""
        return self.images.detach(), self.labels.detach()

    def eval_lr(self) -> Optional[float]:
        """A learned evaluation lr (MTT/TESLA), or None to use the protocol's."""
        return None

    def done(self) -> bool:
        """True once the method has stopped early (RFAD's validation patience); the loop then ends."""
        return False

    def evaluate(self, images: Tensor, labels: Tensor, test: RealData, model_factory: Callable[[int], nn.Module],
                 ev: Any, augment: Any, seed: int, progress: bool = True, desc: str = "eval") -> list[float]:
        """Test accuracies of fresh networks trained on (images, labels): the shared protocol, unless
        the method's paper evaluates its sets differently (RFAD-NN). The pipeline evaluates the random
        baseline through the same method, so both sides share the rule."""

        return evaluate_set(images, labels, test, model_factory, ev, augment, seed=seed, progress=progress, desc=desc)

    def state_dict(self) -> dict[str, Any]:
        return {"images": self.images.detach().cpu(), "labels": self.labels.cpu(), "gen": self.gen.get_state(),
                "sample_gen": self.sample_gen.get_state(), **self.extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.images.device))
        self.labels = state["labels"].to(self.ctx.device)
        self.gen.set_state(state["gen"])
        if "sample_gen" in state:
            self.sample_gen.set_state(state["sample_gen"])
        self.load_extra_state(state)

    def extra_state(self) -> dict[str, Any]:
        """Optimiser states etc. of subclasses."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass


class ImageDistiller(Distiller):
    """Learnable images with SGD(momentum 0.5) — DC, DSA, DM and their pruning/filter variants."""

    def init_state(self) -> None:
        real = self.ctx.real
        self.images = init_synthetic(real, self.ctx.ipc, self.cfg.init, self.gen).requires_grad_(True)
        self.labels = class_major_labels(real.num_classes, self.ctx.ipc, self.ctx.device)
        self.opt_img = torch.optim.SGD([self.images], lr=self.cfg.lr_img, momentum=0.5)

    def extra_state(self) -> dict[str, Any]:
        return {"opt_img": self.opt_img.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.opt_img.load_state_dict(state["opt_img"])

    def syn_by_class(self) -> Tensor:
        """(C, ipc, ...) view of the learnable images (class-major storage)."""
        return self.images.view(self.num_classes, self.ctx.ipc, *self.images.shape[1:])

    def class_chunk(self, net: nn.Module, rows_per_class: int, kind: str = "backward", grads_per_class: int = 0) -> int:
        """Classes per real-side pass of `net` (memory.class_chunk, else the memory budget)."""
        real = self.ctx.real
        return classes_per_pass(net, (real.channels, real.image_size, real.image_size), rows_per_class,
                                self.num_classes, kind=kind, grads_per_class=grads_per_class)

    def real_classes(self, rows: Tensor, seeds: Optional[ClassDraw], chunk: int) -> ClassBatch:
        """The (C, B, ...) real batch of `rows` (C, B), each class under its part of the siamese draw, built
        `chunk` classes at a time (no autograd history)."""
        real = self.ctx.real

        def build(lo: int, hi: int) -> Tensor:
            with torch.no_grad():
                return self.siamese_augment(real.batch(rows[lo:hi]), None if seeds is None else seeds[lo:hi])

        return ClassBatch(build, (*rows.shape, *real.images.shape[1:]), real.device, chunk)

    def syn_classes(self, seeds: Optional[ClassDraw], chunk: int, slots: slice = slice(None)) -> ClassBatch:
        """The (C, ipc', ...) synthetic batch (slots `slots` of every class) under the same per-class
        draw, differentiable, built per chunk when read (never cached: each chunk's graph is used once)."""
        syn = self.syn_by_class()[:, slots]

        def build(lo: int, hi: int) -> Tensor:
            return self.siamese_augment(self.syn_by_class()[lo:hi, slots], None if seeds is None else seeds[lo:hi])

        return ClassBatch(build, syn.shape, syn.device, chunk, cache=False)

    def pair_seeds(self, n: int) -> Optional[ClassDraw]:
        """The step's siamese draw for n classes (None without dsa): one seed from the distiller's
        generator, per class one family and one parameter set (data.augment.ClassDraw). Slice it
        (`draw[lo:hi]`) for a class range; apply it to every batch of those classes."""
        return self.ctx.augment.class_draw(draw_seed(self.gen), n) if self.cfg.dsa else None

    def siamese_augment(self, x: Tensor, seeds: Optional[ClassDraw]) -> Tensor:
        """x (C, n, ...): class c under the draw's class-c transform, in one call; identity without a draw."""
        return x if seeds is None else seeds.apply(x)

    def siamese_pair(self, xr: Tensor, xs: Tensor) -> tuple[Tensor, Tensor]:
        """Per class one shared transform for that class's real and synthetic batch (one draw per call)."""
        seeds = self.pair_seeds(xr.shape[0])
        return self.siamese_augment(xr, seeds), self.siamese_augment(xs, seeds)
