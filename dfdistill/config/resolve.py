"""Turn a composed Hydra config into the effective one, in one place and one order:

    composed groups -> method protocol + paper recipe for (method, dataset, IPC)
    -> profile scaling of what the user left unset -> (the user's typed values, untouched)
    -> one validation against one schema per group.

"Typed" means given on the command line (`cli_overrides`, filled by run.py from Hydra and by
`dfdistill.config.compose`); exp files and YAML defaults are not typed, so recipes and profiles
fill them in. What happened is recorded under `provenance` (recipe rows with their sources, every
profile change, the typed keys), so results.jsonl and `print_config=true` show what actually ran.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from functools import lru_cache
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict

from dfdistill.schema.options import CONF_DIR, load_option, method_schemas_by_option  # noqa: F401 (re-exported)
from dfdistill.config.identity import (  # noqa: F401 (re-exported: the identities live in config/identity.py)
    EVAL_KEYS, NON_SEMANTIC_KEYS, dataset_identity, distill_key, eval_identity, identity, inputs_identity,
    method_identity, result_key,
)
from dfdistill.config import plain_nodes
from dfdistill.config.resolved import ResolvedRun
from dfdistill.schema.groups import (  # noqa: F401 (checked: re-exported)
    DatasetConfig, EvalConfig, LoggerConfig, ProfileConfig, RunConfig, checked, typed,
)
from dfdistill.data.spec import dataset_of, with_absolute_root  # noqa: F401 (dataset_of: re-exported)
from dfdistill.core.errors import ConfigError
from dfdistill.config.store import backbone_schema
from dfdistill.pruning.config import PruningConfig
from dfdistill.recipes import has_cell_rows, is_generic, rows_for
from dfdistill.core.registry import METHODS
from dfdistill.scoring.empirical import epoch_range
from dfdistill.models import MODELS
from dfdistill.core.registry import in_loop_pruning_methods
from dfdistill.schema.options import method_entry

GROUPS = ("dataset", "backbone", "method", "pruning", "eval", "profile", "logger")


log = logging.getLogger("dfdistill")


# ---------------------------------------------------------------------------------------------- #
# what the user typed
# ---------------------------------------------------------------------------------------------- #
def typed_overrides(cfg: DictConfig) -> tuple[set[str], set[str]]:
    """(dotted keys the user typed a value for, groups whose option the user chose)."""
    keys, groups = set(), set()
    for o in cfg.get("cli_overrides") or []:
        key = str(o).split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra."):
            continue
        (groups if key in GROUPS else keys).add(key)
    return keys, groups


def is_typed(key: str, keys: set[str]) -> bool:
    """`key` or a node above it (`pruning.adaptive` covers `pruning.adaptive.beta`) was typed."""
    return any(key == k or key.startswith(k + ".") for k in keys)


# ---------------------------------------------------------------------------------------------- #
# group options (for protocol and recipe swaps)
# ---------------------------------------------------------------------------------------------- #
def group_schema(group: str, option: str) -> type:
    """The schema an option of `group` extends (what Hydra would have merged it into)."""

    if group == "backbone":
        return backbone_schema(option)
    if group == "method":
        return method_class_of(load_option("method", option)).config_cls
    return {"dataset": DatasetConfig, "eval": EvalConfig, "profile": ProfileConfig, "logger": LoggerConfig,
            "pruning": PruningConfig}[group]


@lru_cache(maxsize=None)
def _option_defaults(group: str, option: str) -> dict[str, Any]:
    node = OmegaConf.merge(OmegaConf.structured(group_schema(group, option)), load_option(group, option))
    return OmegaConf.to_container(node)


def option_defaults(group: str, option: str) -> dict[str, Any]:
    """conf/<group>/<option>.yaml merged onto its schema, as a plain dict (interpolations unresolved):
    the option's own defaults, which is what Hydra composes under `group` for `group=option` (no
    option writes outside its group; tests/unit/sweeps/test_plan_speed.py compares every option).
    Made once per process (conf/ and the registries do not change under a run); a fresh copy each call."""
    return copy.deepcopy(_option_defaults(group, option))


def swap_group(cfg: DictConfig, group: str, option: str, keys: set[str]) -> bool:
    """Replace cfg[group] by `option` (keeping the values typed under it); False if already it."""
    if cfg[group].get("name") == option:
        return False
    node = OmegaConf.create(option_defaults(group, option))  # the schema's defaults, as a plain node
    for key in keys:
        if key.startswith(group + "."):
            OmegaConf.update(node, key[len(group) + 1:], OmegaConf.select(cfg, key), force_add=True)
    cfg[group] = node
    return True


# ---------------------------------------------------------------------------------------------- #
# recipes
# ---------------------------------------------------------------------------------------------- #
def paper_dataset(cfg: DictConfig) -> str:
    return cfg.dataset.get("paper_name") or cfg.dataset.name


def method_schema(cfg: DictConfig) -> str:
    return method_schemas_by_option().get(cfg.method.name, cfg.method.name)


def _set(cfg: DictConfig, key: str, value: Any, keys: set[str], groups: set[str], applied: dict, skipped: list,
         source: str) -> None:
    if "." not in key and key in GROUPS:  # a group choice
        if key in groups:
            skipped.append(key)
        elif swap_group(cfg, key, str(value), keys):
            applied[key] = {"value": value, "source": source}
        return
    if is_typed(key, keys):
        skipped.append(key)
        return
    plain_nodes.update(cfg, key, value)  # OmegaConf.update(..., force_add=True), faster
    applied[key] = {"value": value, "source": source}


def apply_recipes(cfg: DictConfig, keys: set[str], groups: set[str]) -> dict[str, Any]:
    """Apply the method's and the pruning option's paper rows for (dataset, ipc) in place.

    Per group the provenance says which rows applied (`rows`), whether one of them is specific to
    this dataset/IPC (`cell`), which typed keys it left alone (`kept_typed`), and why not (`reason`)."""

    out: dict[str, Any] = {}
    ds, ipc = paper_dataset(cfg), int(cfg.ipc)

    option = str(cfg.method.name)  # a registered option is served by its own name; a YAML variant also by its schema's
    names = (option,) if option in METHODS else (option, method_schema(cfg))
    targets = (("method", names), ("pruning", (str(cfg.pruning.get("name", "none")),)))
    for group, applies in targets:
        if cfg[group].get("recipe", "paper") == "none":
            out[group] = {"recipe": "none", "reason": f"{group}.recipe=none"}
            continue
        rows, note = rows_for(group, applies, ds, ipc)
        cell = any(r.specificity() > 0 and not is_generic(r.file) for r in rows)  # dataset-wide rules aside
        if not cell and has_cell_rows(group, applies):
            note = (f"no paper row for {group}={cfg[group].name} dataset={ds} ipc={ipc}; "
                    f"running the {group}'s defaults{' and its method-wide rows' if rows else ''}")
        if not rows:
            out[group] = {"recipe": "none", "reason": note or f"no recipe for {group}={cfg[group].name}"}
            continue
        applied: dict[str, Any] = {}
        skipped: list[str] = []
        for row in rows:
            for key, value in row.values.items():
                _set(cfg, key, value, keys, groups, applied, skipped, f"{row.file}#{row.index}: {row.source}")
        out[group] = {"recipe": "paper", "cell": cell, "rows": [f"{r.file}#{r.index}" for r in rows],
                      "applied": applied, "kept_typed": sorted(set(skipped)), **({"note": note} if note else {})}
    return out


def apply_protocol(cfg: DictConfig, keys: set[str], groups: set[str]) -> Optional[str]:
    """The method's evaluation protocol (method.eval_protocol) unless the user chose `eval=`."""
    protocol = cfg.method.get("eval_protocol")
    if protocol and "eval" not in groups and swap_group(cfg, "eval", protocol, keys):
        return protocol
    return None


# ---------------------------------------------------------------------------------------------- #
# profile
# ---------------------------------------------------------------------------------------------- #
def apply_profile(cfg: DictConfig, keys: Optional[set[str]] = None) -> dict[str, list]:
    """Scale what the user did not type by the profile's non-null caps; returns {key: [from, to]}.
    Method fields: those its config class lists in `profile_caps` (dfdistill/methods/base.ProfileCap)."""
    p, keys = cfg.profile, keys or set()
    changed: dict[str, list] = {}

    def put(key: str, value: Any) -> None:
        if is_typed(key, keys):
            return
        old = OmegaConf.select(cfg, key)
        if old != value:
            changed[key] = [old, value]
            plain_nodes.update(cfg, key, value)  # OmegaConf.update(..., force_add=True), faster

    def cap(key: str, limit: Any) -> None:
        cur = OmegaConf.select(cfg, key)
        if limit is not None and cur is not None:
            put(key, min(int(cur), int(limit)))

    with open_dict(cfg):
        caps = method_class(cfg).config_cls.profile_caps if cfg.method.get("name") else ()  # no method: no caps
        for c in caps:  # what the method declares a profile shortens
            if p.get(c.profile_key) is not None and c.field in cfg.method:
                cap(f"method.{c.field}", cfg.method[c.by_field] if c.by_field else p[c.profile_key])
        if p.get("eval_epochs") is not None:
            put("eval.epochs", int(p.eval_epochs) if cfg.eval.get("epochs") is None
                else min(int(cfg.eval.epochs), int(p.eval_epochs)))
        cap("eval.num_eval", p.get("num_eval"))
        if p.get("width") is not None and "width" in cfg.backbone:
            put("backbone.width", int(p.width))
        for key in ("max_train_per_class", "max_test"):
            if p.get(key) is not None:
                cur = cfg.dataset.get(key)
                put(f"dataset.{key}", int(p[key]) if cur is None else min(int(cur), int(p[key])))
        if cfg.get("pruning") and "train_epochs" in cfg.pruning:
            scale_scoring(cfg, p, put, cap)
        if p.get("checkpoint_every") is not None:
            put("checkpoint_every", int(p.checkpoint_every))
    return changed


def scale_scoring(cfg: DictConfig, p: DictConfig, put, cap) -> None:
    """Reduced scoring: at most `scoring_trials` trials of `scoring_epochs` epochs. A read-out past the
    cap (or 'converged') becomes the mean over the first k epochs, which BiLP §5.4 finds informative
    enough ("the loss values in very early classification epochs are also informative enough")."""
    k = p.get("scoring_epochs")
    cap("pruning.trials", p.get("scoring_trials"))
    if k is None:
        return
    k = int(k)
    cap("pruning.train_epochs", k)

    flat = [x for e in cfg.pruning.epochs for x in (range(epoch_range(e)[0], epoch_range(e)[1] + 1)
                                                    if epoch_range(e) else [e])]  # 'a-b' = every epoch a..b
    reads = [int(e) for e in flat if e not in ("converged", -1) and int(e) <= k]
    if len(reads) < len(flat):
        reads = sorted(set(reads) | set(range(1, k + 1)))
    put("pruning.epochs", reads)


# ---------------------------------------------------------------------------------------------- #
# validation
# ---------------------------------------------------------------------------------------------- #
def method_class(cfg: DictConfig) -> type:
    return method_class_of(cfg.method)


def method_class_of(node: DictConfig) -> type:
    """The registered class of a method node, by its `name` (a `_target_` it still spells must agree)."""

    name = node.get("name")
    if not name:
        raise ConfigError("method config has no name; pick a method with method=<name>")
    entry = method_entry(str(name))
    target = node.get("_target_")
    if target and target != entry.meta["target"]:
        raise ConfigError(f"method.name={name} is {entry.meta['target']} but method._target_={target}; "
                          "drop method._target_ (the class comes from the method registry)")
    return entry.obj


def check_backbone(bcfg: DictConfig) -> Any:
    """The backbone node against its constructor's schema (returned as that schema's object);
    `_target_` must be what `name` builds."""

    name = bcfg.get("name")
    if name not in MODELS:
        raise ConfigError(f"unknown backbone {name!r}; valid: {', '.join(MODELS.names())}")
    obj = checked(backbone_schema(name), bcfg, "backbone")
    target = bcfg.get("_target_")
    if target and target != MODELS.get(name).meta["target"]:
        raise ConfigError(f"backbone.name={name} builds {MODELS.get(name).meta['target']} but "
                          f"backbone._target_={target}; make them agree (or drop _target_)")
    return obj


_PER_JOB = ("output_dir", "cli_overrides")  # plain strings that differ in every job of a sweep


def check_top_level(cfg: DictConfig) -> RunConfig:
    """The top-level keys (ipc, seed, ...) against RunConfig: run before recipes and seeding read them.
    Where the per-job keys are plain strings (they always are from run.py and planning), the rest is
    checked once per content (schema.groups.checked) and the job's own strings put in: no check reads
    them, and a sweep plan validates hundreds of jobs that differ only there."""
    top = {k: v for k, v in cfg.items() if k not in GROUPS and k not in ("provenance",)}
    own = {k: top[k] for k in _PER_JOB if k in top}
    out_dir, typed_lines = own.get("output_dir"), own.get("cli_overrides", [])
    if isinstance(out_dir, str) and all(isinstance(x, str) for x in typed_lines):
        shared = checked(RunConfig, {**top, "output_dir": "", "cli_overrides": [], **{g: {} for g in GROUPS}},
                         "top-level")
        return dataclasses.replace(shared, output_dir=out_dir, cli_overrides=list(typed_lines))
    return checked(RunConfig, {**top, **{g: {} for g in GROUPS}}, "top-level")


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Every group against its one schema (range checks included), then cross-group rules; returns the
    typed parts (ResolvedRun's fields: top, dataset, backbone, method_cls, method, pruning, eval, ...)."""

    def group(schema: type, node: Any, name: str) -> Any:  # its cache key read straight off the nodes
        return checked(schema, node, name, plain_nodes.to_plain(node) if OmegaConf.is_dict(node) else None)

    parts: dict[str, Any] = {"top": check_top_level(cfg), "dataset": group(DatasetConfig, cfg.dataset, "dataset"),
                             "eval": group(EvalConfig, cfg.eval, "eval"),
                             "profile": group(ProfileConfig, cfg.profile, "profile"),
                             "logger": group(LoggerConfig, cfg.logger, "logger"), "backbone": check_backbone(cfg.backbone)}
    for arch in cfg.eval.get("cross_arch") or []:  # every evaluation backbone is checked before any work
        try:
            check_backbone(load_option("backbone", str(arch)))
        except ConfigError as exc:
            raise ConfigError(f"eval.cross_arch entry {arch!r}: {exc}") from None
    pruning = parts["pruning"] = group(PruningConfig, cfg.get("pruning") or {}, "pruning")
    cls = parts["method_cls"] = method_class(cfg)
    parts["method"] = group(cls.config_cls, cfg.method, "method")
    static = pruning._target_ and (pruning.ratio or pruning.stratum)
    if pruning.adaptive is not None and not cls.supports_adaptive and not static:  # bilp: its static half runs
        raise ConfigError(f"method {cfg.method.get('name')} has no real-batch matching step for in-loop (ITE) pruning "
                          f"(pruning={pruning.name}); use pruning=loss or random (static), or a method among "
                          f"{', '.join(in_loop_pruning_methods())}")
    if cfg.dataset.get("root") in ("???",):
        raise ConfigError(f"dataset.root is required for dataset={cfg.dataset.name}: add dataset.root=/path/to/data")
    return parts


# ---------------------------------------------------------------------------------------------- #
# entry point
# ---------------------------------------------------------------------------------------------- #
_SAID: set[str] = set()  # recipe notes already logged by this process


def resolve_run(cfg: DictConfig, set_key: Optional[str] = None) -> ResolvedRun:
    """The run, resolved once: the effective config (read-only), its typed parts and its keys.
    `set_key`: the saved set a stage=eval run evaluates (default: the run's own distillation)."""
    cfg, parts = effective(cfg)
    parts = copy.deepcopy(parts)  # validation remembers its objects for other runs: this run gets its own
    OmegaConf.set_readonly(cfg, True)
    key = distill_key(cfg)
    set_key = set_key or key
    return ResolvedRun(cfg=cfg, **{**parts, "dataset": with_absolute_root(parts["dataset"])}, distill_key=key,
                       set_key=set_key, result_key=result_key(set_key, cfg), identity=identity(cfg),
                       inputs=inputs_identity(cfg))


def resolve_config(cfg: DictConfig) -> DictConfig:
    """The effective config alone (print_config, sweep planning; a run uses `resolve_run`)."""
    return effective(cfg)[0]


def effective(cfg: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """The effective config: protocol, recipes, profile (typed values win), validated, with provenance;
    and its typed parts (from that one validation)."""
    cfg = plain_nodes.create_or_omegaconf(plain_nodes.to_plain(cfg))  # resolved, untyped: recipes may set any value
    missing = [k for k in ("dataset", "backbone", "method", "eval", "profile") if k not in cfg]
    if missing:
        raise ConfigError(f"config is missing groups {missing}; run through run.py or compose conf/config.yaml")
    if "pruning" not in cfg:
        cfg.pruning = load_option("pruning", "none")
    check_top_level(cfg)  # `ipc=abc` is one line here, not a traceback from the recipes' int(ipc)
    keys, groups = typed_overrides(cfg)
    protocol = apply_protocol(cfg, keys, groups)
    recipes = apply_recipes(cfg, keys, groups)
    if protocol is None:  # a recipe may name the protocol (method.eval_protocol) for this cell
        protocol = apply_protocol(cfg, keys, groups)
    scaled = apply_profile(cfg, keys)
    parts = validate(cfg)
    plain_nodes.put(cfg, "provenance", {"typed": sorted(keys | groups), "eval_protocol": cfg.eval.get("name"),
                                        "recipe": recipes, "profile": {"name": cfg.profile.name, "scaled": scaled}})
    say_notes(recipes)
    return cfg, parts


def say_notes(recipes: dict[str, Any]) -> None:
    """Log the notes of a resolution's recipes (its provenance's `recipe`), each once per process: a
    sweep resolves the same cell many times. A plan that takes a job's resolution from its memo
    (sweeps/plan_memo.py) says them through here too, so its output is the one a resolution gives."""
    for info in recipes.values():
        msg = info.get("note") or (info.get("reason") if "no paper row" in info.get("reason", "") else None)
        if msg and msg not in _SAID:
            _SAID.add(msg)
            log.info("recipe: %s", msg)
