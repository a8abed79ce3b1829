"""ConvNet (DC/DM/MTT default backbone) plus the small shared pieces every backbone uses.

The norm/activation/pool factories live here because ConvNet is the reference backbone that
exposes all of them; the other backbones import them so option names and errors stay uniform.
Activations are never in-place: torch.func (vmap/functional_call) and double backward need that.
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import torch
from torch import nn

from dfdistill.core.errors import DataError
from dfdistill.models import register

NORMS = ("instancenorm", "batchnorm", "layernorm", "groupnorm", "none")
ACTS = ("relu", "sigmoid", "leakyrelu", "swish")
POOLS = ("avgpooling", "maxpooling", "none")


def check_choice(kind: str, value: str, valid: tuple[str, ...]) -> None:
    """ValueError listing the valid names, so a typo in a yaml is fixed in one look."""
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(valid)}")


def make_norm(norm: str, channels: int, spatial: int | None = None, valid: tuple[str, ...] = NORMS) -> nn.Module:
    """Normalisation layer; 'instancenorm' is GroupNorm(C, C) as in DC (works on batch size 1)."""
    check_choice("norm", norm, valid)
    if norm == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if norm == "batchnorm":
        return nn.BatchNorm2d(channels)
    if norm == "layernorm":
        if spatial is None:
            raise ValueError("layernorm needs the feature-map size at its depth")
        return nn.LayerNorm([channels, spatial, spatial], elementwise_affine=True)
    if norm == "groupnorm":
        if channels % 4:
            raise ValueError(f"groupnorm uses 4 groups and needs channels divisible by 4, got {channels}")
        return nn.GroupNorm(4, channels, affine=True)
    return nn.Identity()


def make_act(act: str) -> nn.Module:
    """Non-inplace activation; swish is x * sigmoid(x) (== SiLU)."""
    check_choice("act", act, ACTS)
    if act == "relu":
        return nn.ReLU()
    if act == "sigmoid":
        return nn.Sigmoid()
    if act == "leakyrelu":
        return nn.LeakyReLU(0.01)
    return nn.SiLU()


def make_pool(pool: str) -> nn.Module:
    """2x2 stride-2 pooling, or identity for 'none'."""
    check_choice("pool", pool, POOLS)
    if pool == "avgpooling":
        return nn.AvgPool2d(kernel_size=2, stride=2)
    if pool == "maxpooling":
        return nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Identity()


def check_spec(model: str, channels: int, num_classes: int, image_size: int) -> None:
    """DataError for shapes no backbone can take (a dataset/config mismatch, not a code bug)."""
    if channels < 1 or image_size < 1 or num_classes < 1:
        raise DataError(
            f"{model} needs channels, num_classes and image_size >= 1, "
            f"got channels={channels}, num_classes={num_classes}, image_size={image_size}"
        )


def check_spatial(model: str, size: int, image_size: int, where: str) -> int:
    """DataError when a feature map shrinks to nothing; returns ``size`` otherwise."""
    if size < 1:
        raise DataError(f"{model}: image_size={image_size} is too small (feature map vanishes {where})")
    return size


class Backbone(nn.Module):
    """Common contract: ``embed`` gives the features the final ``classifier`` sees (DM matches
    them), ``feature_dim`` is their length, and inputs of the wrong shape fail with DataError."""

    feature_dim: int
    classifier: nn.Module

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__()
        check_spec(type(self).__name__, channels, num_classes, image_size)
        self.channels = channels
        self.num_classes = num_classes
        self.image_size = image_size

    def check_input(self, x: torch.Tensor) -> None:
        """Shape mismatches otherwise surface as opaque matmul errors deep in the classifier."""
        expected = (self.channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise DataError(
                f"{type(self).__name__} expects inputs of shape (N, {expected[0]}, {expected[1]}, "
                f"{expected[2]}), got {tuple(x.shape)}"
            )

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


@register("convnet")
class ConvNet(Backbone):
    """ConvNet-D: depth x [conv3x3 -> norm -> act -> pool], then one Linear on the flat map.

    A 1-channel input gets padding 3 on the first conv so 28px (MNIST) behaves like 32px
    (`first_pad` overrides that padding).
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        width: int = 128,
        depth: int = 3,
        act: str = "relu",
        norm: str = "instancenorm",
        pool: str = "avgpooling",
        first_pad: Optional[int] = None,
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        if width < 1 or depth < 1:
            raise ValueError(f"ConvNet needs width >= 1 and depth >= 1, got width={width}, depth={depth}")
        check_choice("norm", norm, NORMS)
        check_choice("act", act, ACTS)
        check_choice("pool", pool, POOLS)
        layers: list[nn.Module] = []
        in_ch, size = channels, image_size
        for d in range(depth):
            pad = (first_pad if first_pad is not None else 3 if channels == 1 else 1) if d == 0 else 1
            layers.append(nn.Conv2d(in_ch, width, kernel_size=3, padding=pad, bias=True))
            size = size + 2 * pad - 2
            layers += [make_norm(norm, width, size), make_act(act), make_pool(pool)]
            if pool != "none":
                size = check_spatial("ConvNet", size // 2, image_size, f"after block {d + 1} of {depth}")
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x).flatten(1)


register("convnet_d4")(partial(ConvNet, depth=4))
register("convnet_d5")(partial(ConvNet, depth=5))
register("convnet_bn")(partial(ConvNet, norm="batchnorm"))
register("convnet_ln")(partial(ConvNet, norm="layernorm"))
register("convnet_gn")(partial(ConvNet, norm="groupnorm"))
register("convnet_nn")(partial(ConvNet, norm="none"))
register("convnet_w32")(partial(ConvNet, width=32))
register("convnet_w64")(partial(ConvNet, width=64))


@register("convnet_gaussian")
class GaussianConvNet(ConvNet):
    """ConvNet-D without normalisation in the NNGP parameterisation of RFAD/KIP (RFAD models.py facts).

    Why a variant: the random-feature kernel K = 2 * phi phi^T + 0.01 (RFAD) is the NNGP of this net
    only with weights ~ N(0, w_var / fan_in) and biases ~ N(0, b_std^2) in every conv and in the
    head; PyTorch's default uniform init has a third of that variance and the kernel would collapse
    onto its constant term. Padding is 1 on every conv, also for 1-channel input (RFAD's ConvNet).
    RFAD-NN evaluates on width 1024 (conf/backbone/convnet_gaussian.yaml); its random features use
    width 256 (method.feature_width)."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        width: int = 1024,
        depth: int = 3,
        act: str = "relu",
        pool: str = "avgpooling",
        w_var: float = 2.0,
        b_std: float = 0.1,
    ) -> None:
        super().__init__(channels, num_classes, image_size, width=width, depth=depth, act=act, norm="none",
                         pool=pool, first_pad=1)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    fan_in = m.weight[0].numel()
                    m.weight.normal_(0.0, (w_var / fan_in) ** 0.5)
                    m.bias.normal_(0.0, b_std)
