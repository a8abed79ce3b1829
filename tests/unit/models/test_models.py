"""Backbone registry, shapes, reference parameter counts and torch.func compatibility."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from dfdistill.core.errors import ConfigError, DataError
from dfdistill.models import MODELS, build_model, count_parameters
from dfdistill.models.convnet import ConvNet

from conftest import ROOT

BACKBONE_DIR = ROOT / "conf" / "backbone"
EXPECTED_NAMES = {
    "convnet", "convnet_d4", "convnet_d5", "convnet_bn", "convnet_ln", "convnet_gn", "convnet_nn",
    "convnet_w32", "convnet_w64", "convnet_gaussian", "lenet", "alexnet", "alexnet_bn", "vgg11", "vgg11_bn", "mlp",
    "resnet18", "resnet18_bn", "resnet18_ap", "resnet18_bn_ap", "resnet_ap10", "resnet_ap10_bn",
}
# (name, channels, size) combinations that are documented as unsupported; none at 28/32 px today.
UNSUPPORTED: set[tuple[str, int, int]] = set()


def test_registry_has_exactly_the_documented_names() -> None:
    assert set(MODELS.names()) == EXPECTED_NAMES


@pytest.mark.parametrize(("classes", "expected"), [(10, 320_010), (100, 504_420)])
def test_convnet3_parameter_count_matches_dc(classes: int, expected: int) -> None:
    assert count_parameters(build_model("convnet", 3, classes, 32)) == expected


def test_instancenorm_is_groupnorm_per_channel() -> None:
    norms = [m for m in build_model("convnet", 3, 10, 32).modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == 3
    assert all(isinstance(m, nn.GroupNorm) and m.num_groups == m.num_channels == 128 and m.affine for m in norms)
    gn4 = [m for m in build_model("convnet_gn", 3, 10, 32).modules() if isinstance(m, nn.GroupNorm)]
    assert gn4 and all(m.num_groups == 4 for m in gn4)
    for name in ("vgg11", "resnet18", "resnet_ap10"):
        model = build_model(name, 3, 10, 32)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), name
        assert all(m.num_groups == m.num_channels for m in model.modules() if isinstance(m, nn.GroupNorm)), name
    for name in ("convnet_bn", "vgg11_bn", "resnet18_bn", "resnet_ap10_bn", "alexnet_bn"):
        assert any(isinstance(m, nn.BatchNorm2d) for m in build_model(name, 3, 10, 32).modules()), name
    assert not any(isinstance(m, (nn.GroupNorm, nn.BatchNorm2d)) for m in build_model("alexnet", 3, 10, 32).modules())
    assert any(isinstance(m, nn.LayerNorm) for m in build_model("convnet_ln", 3, 10, 32).modules())


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_forward_and_embed_shapes(name: str, channels: int, size: int) -> None:
    if (name, channels, size) in UNSUPPORTED:
        pytest.skip("documented as unsupported")
    torch.manual_seed(0)
    model = build_model(name, channels, 7, size)
    assert isinstance(model.feature_dim, int) and model.feature_dim > 0
    x = torch.randn(2, channels, size, size)
    with torch.no_grad():
        out, emb = model(x), model.embed(x)
    assert out.shape == (2, 7)
    assert emb.shape == (2, model.feature_dim)
    assert torch.isfinite(out).all()


def test_convnet_d4_on_64px() -> None:
    model = build_model("convnet_d4", 3, 200, 64)
    x = torch.randn(2, 3, 64, 64)
    assert model(x).shape == (2, 200)
    assert model.feature_dim == 128 * 4 * 4 and model.embed(x).shape == (2, 2048)


def test_resnet18_ap_feature_dim_is_8192_at_32px() -> None:
    model = build_model("resnet18_ap", 3, 10, 32)
    assert model.feature_dim == 8192
    assert build_model("resnet18", 3, 10, 32).feature_dim == 512
    assert build_model("resnet_ap10", 3, 10, 32).feature_dim == 512


def test_resnet_ap10_stem_depends_on_size() -> None:
    small, mid, large = (build_model("resnet_ap10", 3, 10, s) for s in (64, 128, 224))
    assert not any(isinstance(m, nn.AvgPool2d) for m in small.stem)
    assert [m.kernel_size for m in mid.stem if isinstance(m, nn.AvgPool2d)] == [2]
    assert large.stem[0].kernel_size == (7, 7) and large.stem[-1].kernel_size == 4
    assert large(torch.randn(1, 3, 224, 224)).shape == (1, 10)


def test_one_channel_first_conv_padding() -> None:
    assert build_model("convnet", 1, 10, 28).features[0].padding == (3, 3)
    assert build_model("convnet", 3, 10, 32).features[0].padding == (1, 1)
    assert build_model("convnet", 1, 10, 28).feature_dim == 128 * 4 * 4  # 28 px behaves as 32 px
    assert build_model("vgg11", 1, 10, 28).features[0].padding == (3, 3)
    assert build_model("lenet", 1, 10, 28).features[0].padding == (2, 2)
    assert build_model("alexnet", 1, 10, 28).features[0].padding == (4, 4)


def test_activations_are_not_inplace() -> None:
    for name in ("convnet", "resnet18", "vgg11", "alexnet", "lenet", "mlp"):
        for m in build_model(name, 3, 10, 32).modules():
            assert not getattr(m, "inplace", False), (name, m)


@pytest.mark.parametrize("act", ["relu", "sigmoid", "leakyrelu", "swish"])
@pytest.mark.parametrize("pool", ["avgpooling", "maxpooling", "none"])
def test_convnet_act_and_pool_options(act: str, pool: str) -> None:
    model = ConvNet(channels=3, num_classes=4, image_size=8, width=8, depth=2, act=act, pool=pool)
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert model.feature_dim == 8 * (2 * 2 if pool != "none" else 8 * 8)


def test_swish_is_x_sigmoid_x() -> None:
    act = ConvNet(3, 2, 8, width=4, depth=1, act="swish").features[2]
    x = torch.linspace(-3, 3, 11)
    torch.testing.assert_close(act(x), x * torch.sigmoid(x))


def test_convnet_per_sample_grads_with_vmap_match_loop() -> None:
    torch.manual_seed(0)
    model = build_model("convnet", 3, 10, 32)
    params = {k: v.detach() for k, v in model.named_parameters()}
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([1, 4, 9])

    def loss_fn(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, p, (xi.unsqueeze(0),))
        return nn.functional.cross_entropy(out, yi.unsqueeze(0))

    batched = vmap(grad(loss_fn), in_dims=(None, 0, 0))(params, x, y)
    for i in range(3):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        for k, p in model.named_parameters():
            torch.testing.assert_close(batched[k][i], p.grad, atol=1e-5, rtol=1e-5)


def test_convnet_double_backward() -> None:
    """Gradient matching differentiates through parameter gradients (needs non-inplace ops)."""
    model = build_model("convnet", 3, 10, 8, width=8, depth=2)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    grads = torch.autograd.grad(loss, list(model.parameters()), create_graph=True)
    (gx,) = torch.autograd.grad(sum(g.pow(2).sum() for g in grads), x)
    assert gx.shape == x.shape and torch.isfinite(gx).all() and gx.abs().sum() > 0


def test_unknown_name_raises_config_error_listing_choices() -> None:
    with pytest.raises(ConfigError, match="convnet"):
        build_model("convnet_typo", 3, 10, 32)


def test_unknown_option_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="widht"):
        build_model("convnet", 3, 10, 32, widht=64)


@pytest.mark.parametrize(("option", "value"), [("norm", "batchnrom"), ("act", "gelu"), ("pool", "stride")])
def test_unknown_norm_act_pool_raise_value_error(option: str, value: str) -> None:
    with pytest.raises(ValueError, match="valid"):
        build_model("convnet", 3, 10, 32, **{option: value})
    with pytest.raises(ValueError, match="instancenorm"):
        build_model("resnet18", 3, 10, 32, norm="layernorm")


@pytest.mark.parametrize(
    ("name", "channels", "size", "opts"),
    [("convnet", 3, 16, {"depth": 5}), ("resnet18", 3, 8, {}), ("vgg11", 3, 16, {}), ("lenet", 3, 8, {}),
     ("convnet", 0, 32, {})],
)
def test_impossible_shapes_raise_data_error(name: str, channels: int, size: int, opts: dict) -> None:
    with pytest.raises(DataError):
        build_model(name, channels, 10, size, **opts)


def test_wrong_input_shape_raises_data_error() -> None:
    model = build_model("convnet_w32", 3, 10, 32)
    with pytest.raises(DataError, match=r"\(N, 3, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))


def _yaml_nodes() -> list[Path]:
    return sorted(BACKBONE_DIR.glob("*.yaml"))


def test_every_registry_name_has_a_yaml() -> None:
    assert {p.stem for p in _yaml_nodes()} == EXPECTED_NAMES


@pytest.mark.parametrize("path", _yaml_nodes(), ids=lambda p: p.stem)
def test_yaml_builds_same_model_via_registry_and_target(path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    node = yaml.safe_load(path.read_text())
    assert node["name"] == path.stem
    options = {k: v for k, v in node.items() if k not in ("name", "_target_", "defaults")}
    module, _, attr = node["_target_"].rpartition(".")
    target = getattr(importlib.import_module(module), attr)
    via_target = target(channels=3, num_classes=10, image_size=32, **options)
    via_registry = build_model(node["name"], 3, 10, 32, **options)
    assert type(via_target) is type(via_registry)
    assert count_parameters(via_target) == count_parameters(via_registry)
    assert via_target.feature_dim == via_registry.feature_dim
    # The yaml's options must reproduce the registry variant even without the registry defaults.
    assert [type(m) for m in via_target.modules()] == [type(m) for m in build_model(node["name"], 3, 10, 32).modules()]
