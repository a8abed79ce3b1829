"""ResNets used in distillation papers: DC's CIFAR ResNet18 (strided or "AP" avg-pool downsampling)
and IDC's ResNetAP-10.

"AP" replaces every stride-2 conv by a stride-1 conv followed by 2x2 average pooling; matching
methods prefer it because strided convs alias and make gradient matching noisier.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from dfdistill.models import register
from dfdistill.models.convnet import Backbone, check_choice, check_spatial, make_norm

RESNET_NORMS = ("instancenorm", "batchnorm")
WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity / projection shortcut; ``ap`` moves the stride into an avg-pool."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, ap: bool) -> None:
        super().__init__()
        conv_stride = 1 if ap else stride
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=conv_stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, planes, valid=RESNET_NORMS)
        self.pool: nn.Module = nn.AvgPool2d(stride, stride) if (ap and stride > 1) else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm, planes, valid=RESNET_NORMS)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            proj: list[nn.Module] = [nn.Conv2d(in_planes, planes, kernel_size=1, stride=conv_stride, bias=False)]
            if ap and stride > 1:
                proj.append(nn.AvgPool2d(stride, stride))
            proj.append(make_norm(norm, planes, valid=RESNET_NORMS))
            self.shortcut = nn.Sequential(*proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _downsample(size: int, stride: int, ap: bool) -> int:
    """Spatial size after a stride-s stage: avg-pool floors, a padded strided 3x3 conv ceils."""
    if stride == 1:
        return size
    return size // stride if ap else (size - 1) // stride + 1


def _make_stages(
    blocks: tuple[int, ...], norm: str, ap: bool, size: int, image_size: int, model: str
) -> tuple[nn.Sequential, int]:
    """Four stages of BasicBlocks (widths 64..512, first stage stride 1); returns them and the final size."""
    stages: list[nn.Module] = []
    in_planes = WIDTHS[0]
    for i, (planes, n) in enumerate(zip(WIDTHS, blocks)):
        stride = 1 if i == 0 else 2
        layer: list[nn.Module] = []
        for b in range(n):
            layer.append(BasicBlock(in_planes, planes, stride if b == 0 else 1, norm, ap))
            in_planes = planes
        size = check_spatial(model, _downsample(size, stride, ap), image_size, f"in stage {i + 1}")
        stages.append(nn.Sequential(*layer))
    return nn.Sequential(*stages), size


@register("resnet18")
class ResNet18(Backbone):
    """DC's CIFAR ResNet18: 3x3 stem, no max-pool, [2,2,2,2] blocks, avg_pool(4) -> Linear.

    ``ap=True`` is DC's ResNet18_AP: avg-pool downsampling and no final pooling, so the classifier
    sees the whole 512x4x4 map (8192 features) at 32 px.
    """

    def __init__(
        self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm", ap: bool = False
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        check_choice("norm", norm, RESNET_NORMS)
        self.stem = nn.Sequential(
            nn.Conv2d(channels, WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False),
            make_norm(norm, WIDTHS[0], valid=RESNET_NORMS),
            nn.ReLU(),
        )
        self.layers, size = _make_stages((2, 2, 2, 2), norm, bool(ap), image_size, image_size, "ResNet18")
        if ap:
            self.final_pool: nn.Module = nn.Identity()  # DC's avg_pool2d(kernel_size=1) is a no-op
        else:
            size = check_spatial("ResNet18", size // 4, image_size, "at the final 4x4 avg-pool")
            self.final_pool = nn.AvgPool2d(4)
        self.feature_dim = WIDTHS[-1] * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.final_pool(self.layers(self.stem(x))).flatten(1)


register("resnet18_bn")(partial(ResNet18, norm="batchnorm"))
register("resnet18_ap")(partial(ResNet18, ap=True))
register("resnet18_bn_ap")(partial(ResNet18, norm="batchnorm", ap=True))

RESNET_AP_BLOCKS = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2)}


@register("resnet_ap10")
class ResNetAP(Backbone):
    """IDC's ResNetAP (depth 10 by default): avg-pool downsampling, size-dependent stem, global pool.

    Stem: conv3x3 for <= 64 px; + AvgPool(2) for <= 128 px; conv7x7 + AvgPool(4) above, so large
    images are reduced before the expensive stages.
    """

    def __init__(
        self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm", depth: int = 10
    ) -> None:
        super().__init__(channels, num_classes, image_size)
        check_choice("norm", norm, RESNET_NORMS)
        if depth not in RESNET_AP_BLOCKS:
            raise ValueError(f"unknown ResNetAP depth {depth!r}; valid: {', '.join(map(str, RESNET_AP_BLOCKS))}")
        c0 = WIDTHS[0]
        if image_size <= 128:
            stem: list[nn.Module] = [nn.Conv2d(channels, c0, kernel_size=3, stride=1, padding=1, bias=False)]
            stem_pool = 1 if image_size <= 64 else 2
        else:
            stem = [nn.Conv2d(channels, c0, kernel_size=7, stride=1, padding=3, bias=False)]
            stem_pool = 4
        stem += [make_norm(norm, c0, valid=RESNET_NORMS), nn.ReLU()]
        if stem_pool > 1:
            stem.append(nn.AvgPool2d(stem_pool, stem_pool))
        self.stem = nn.Sequential(*stem)
        size = check_spatial("ResNetAP", image_size // stem_pool, image_size, "after the stem")
        self.layers, _ = _make_stages(RESNET_AP_BLOCKS[depth], norm, True, size, image_size, "ResNetAP")
        self.feature_dim = WIDTHS[-1]
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """IDC's He-style init (fan-out over kernel area); norms start as identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.layers(self.stem(x)).mean(dim=(2, 3))


register("resnet_ap10_bn")(partial(ResNetAP, norm="batchnorm"))
