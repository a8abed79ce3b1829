"""Every dataset x backbone x method option composes and validates; bad values fail in one line."""

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import open_dict

from dfdistill.config.compose import compose_run_config
from dfdistill.config.resolve import resolve_config, resolve_run
from dfdistill.core.errors import ConfigError
from conftest import CONF


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in ("dataset", "backbone", "method", "pruning", "eval",
                                                               "profile", "logger") for o in options(g)])
def test_every_group_option_composes_and_validates(compose_cfg, group, option):
    """Every option of every group (a new YAML is picked up without a test edit) composes against its
    schema and passes the one validation at resolve time."""
    over = [f"{group}={option}"] + ([] if group == "profile" else ["profile=smoke"])
    if group == "dataset" and option == "image_folder":
        over.append("dataset.root=/some/where")
    if group == "pruning" and option in ("ite", "bilp"):
        over.append("method=dc")
    run = resolve_run(compose_cfg(over))
    assert run.cfg[group].name == option
    if group == "method":
        assert isinstance(run.method, run.method_cls.config_cls) and run.method.name == option
    if group in ("dataset", "eval", "pruning", "profile", "logger"):
        assert getattr(run, group).name == option  # the typed part, not only the DictConfig


def test_every_registered_method_and_backbone_has_a_yaml():
    from dfdistill.models import MODELS
    from dfdistill.core.registry import METHODS

    assert set(METHODS.names()) <= set(options("method"))
    assert set(MODELS.names()) == set(options("backbone"))


@pytest.mark.parametrize("override,needle", [
    ("ipc=0", "ipc must be a positive integer"),
    ("eval.num_eval=0", "num_eval"),
    ("method.lr_img=-1", "lr_img"),
    ("device=tpu", "device must be"),
    ("method.init=zeros", "method.init"),
])
def test_bad_values_raise_config_error(compose_cfg, override, needle):
    cfg = compose_cfg([override, "profile=smoke"])
    with pytest.raises(ConfigError, match=needle):
        resolve_config(cfg)


def test_profile_scales_only_sizes(resolved):
    full = resolved(["profile=full", "method=dc"])
    cpu = resolved(["profile=cpu", "method=dc"])
    assert full.method.iterations == 1000 and cpu.method.iterations == 100
    assert cpu.backbone.width < full.backbone.width
    for key in ("lr_img", "lr_net", "init", "dis_metric", "dsa"):
        assert full.method[key] == cpu.method[key]


def test_wrong_type_fails_at_compose(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        with pytest.raises(Exception, match="ipc|iterations"):
            compose("config", overrides=["method.iterations=lots"])
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("cell", ["dataset=cifar10 ipc=1", "dataset=cifar100 ipc=1", "dataset=tinyimagenet ipc=50"])
def test_mtt_recipe_cells_resolve_under_small_profiles(resolved, cell):
    """Shortened experts (profile.expert_train_epochs) shrink the matched span with them instead of failing."""
    for profile in ("smoke", "cpu"):
        cfg = resolved(["method=mtt", *cell.split(), f"profile={profile}"])
        assert cfg.method.expert_epochs <= cfg.method.expert_train_epochs
    full = resolved(["method=mtt", *cell.split(), "profile=full"])
    assert full.method.expert_train_epochs == 50 and full.method.expert_epochs >= 2


def test_explicit_span_longer_than_experts_still_fails(resolved):
    with pytest.raises(ConfigError, match="expert_epochs"):
        resolved(["method=mtt", "profile=full", "method.expert_train_epochs=2", "method.expert_epochs=3"])


@pytest.mark.parametrize("override,method,new", [
    ("method.metric=idc_l1", "idc", "method.dis_metric"),
    ("method.inner_loop=5", "idc", "method.match_steps"),
    ("method.lr_teacher=0.01", "mtt", "method.syn_lr_init"),
    ("method.train_epochs=5", "tesla", "method.expert_train_epochs"),
    ("method.gamma=0.1", "dfcolearn_random", "method.l1_weight"),
    ("method.lam=0.1", "dfcolearn", "method.mi_weight"),
    ("eval.gamma=0.5", "dc", "eval.lr_decay"),
    ("profile.inner_loop=3", "dm", "profile.match_steps"),
    ("profile.expert_epochs=3", "mtt", "profile.expert_train_epochs"),
])
def test_renamed_keys_fail_in_one_line_naming_the_new_key(override, method, new):
    with pytest.raises(ConfigError, match=f"renamed to {new}") as exc:
        compose_run_config([f"method={method}", override])
    assert "\n" not in str(exc.value)


def test_dc_keeps_its_reference_inner_loop(resolved):
    """`inner_loop` is renamed for IDC only: DC's reference key (network epochs) stays valid."""
    cfg = resolved(["method=dc", "method.inner_loop=3"])
    assert cfg.method.inner_loop == 3
