"""Classic cross-architecture backbones from DC's evaluation suite: MLP, LeNet, AlexNet, VGG11.

Flatten sizes are computed from ``image_size`` (the reference code hard-codes 28/32 px) so other
resolutions work or fail early with DataError.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from dfdistill.models import register
from dfdistill.models.convnet import Backbone, check_choice, check_spatial, make_norm


@register("mlp")
class MLP(Backbone):
    """Flatten -> hidden -> hidden -> classes with ReLU; ``embed`` is the last hidden layer."""

    def __init__(self, channels: int, num_classes: int, image_size: int, hidden: int = 128) -> None:
        super().__init__(channels, num_classes, image_size)
        if hidden < 1:
            raise ValueError(f"MLP needs hidden >= 1, got {hidden}")
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * image_size * image_size, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.feature_dim = hidden
        self.classifier = nn.Linear(hidden, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.body(x)


@register("lenet")
class LeNet(Backbone):
    """LeNet-5: two conv5x5+ReLU+maxpool stages, FC 120 -> 84 -> classes; ``embed`` is the 84-d layer."""

    def __init__(self, channels: int, num_classes: int, image_size: int) -> None:
        super().__init__(channels, num_classes, image_size)
        pad = 2 if channels == 1 else 0
        size = check_spatial("LeNet", image_size + 2 * pad - 4, image_size, "at conv1")
        size = check_spatial("LeNet", size // 2, image_size, "at pool1")
        size = check_spatial("LeNet", size - 4, image_size, "at conv2")
        size = check_spatial("LeNet", size // 2, image_size, "at pool2")
        self.features = nn.Sequential(
            nn.Conv2d(channels, 6, kernel_size=5, padding=pad),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Flatten(),
            nn.Linear(16 * size * size, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
        )
        self.feature_dim = 84
        self.classifier = nn.Linear(84, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x)


@register("alexnet")
class AlexNet(Backbone):
    """CIFAR-sized AlexNet (conv 128-192-256-192-192); norm='batchnorm' gives DC's AlexNetBN."""

    NORMS = ("none", "batchnorm")

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "none") -> None:
        super().__init__(channels, num_classes, image_size)
        check_choice("norm", norm, self.NORMS)

        def block(cin: int, cout: int, k: int, pad: int) -> list[nn.Module]:
            conv = nn.Conv2d(cin, cout, kernel_size=k, padding=pad)
            return [conv, make_norm(norm, cout, valid=self.NORMS), nn.ReLU()]

        pad0 = 4 if channels == 1 else 2
        size = check_spatial("AlexNet", image_size + 2 * pad0 - 4, image_size, "at conv1")
        for stage in range(3):
            size = check_spatial("AlexNet", size // 2, image_size, f"at pool{stage + 1}")
        self.features = nn.Sequential(
            *block(channels, 128, 5, pad0),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *block(128, 192, 5, 2),
            nn.MaxPool2d(kernel_size=2, stride=2),
            *block(192, 256, 3, 1),
            *block(256, 192, 3, 1),
            *block(192, 192, 3, 1),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.feature_dim = 192 * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x).flatten(1)


register("alexnet_bn")(partial(AlexNet, norm="batchnorm"))

VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@register("vgg11")
class VGG11(Backbone):
    """VGG11 with conv3x3 -> norm -> ReLU; instancenorm (GroupNorm(C, C)) by default as in DC."""

    NORMS = ("instancenorm", "batchnorm")

    def __init__(self, channels: int, num_classes: int, image_size: int, norm: str = "instancenorm") -> None:
        super().__init__(channels, num_classes, image_size)
        check_choice("norm", norm, self.NORMS)
        layers: list[nn.Module] = []
        in_ch, size, first = channels, image_size, True
        for item in VGG11_CFG:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                size = check_spatial("VGG11", size // 2, image_size, "in a max-pool")
                continue
            assert isinstance(item, int)
            pad = 3 if (first and channels == 1) else 1
            conv = nn.Conv2d(in_ch, item, kernel_size=3, padding=pad)
            layers += [conv, make_norm(norm, item, valid=self.NORMS), nn.ReLU()]
            size += 2 * pad - 2
            in_ch, first = item, False
        self.features = nn.Sequential(*layers)
        self.feature_dim = in_ch * size * size
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.features(x).flatten(1)


register("vgg11_bn")(partial(VGG11, norm="batchnorm"))
