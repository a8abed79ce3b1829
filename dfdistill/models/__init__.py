"""Backbone registry: one place that maps a config name to a network constructor.

Every constructor takes ``(channels, num_classes, image_size, **options)`` so the pipeline can build
any backbone from the dataset's shape plus the ``conf/backbone/NAME.yaml`` options through
:func:`build_model`. The registry is the shared one (``dfdistill.core.registry.BACKBONES``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from torch import nn

from dfdistill.core.errors import ConfigError
from dfdistill.core.registry import BACKBONES, register_backbone

MODELS = BACKBONES  # the backbone registry (dfdistill.core.registry): name -> Entry(constructor, meta)
register = register_backbone  # `@register("name")` on a constructor (modules of this package use it)


def _accepted_options(ctor: Callable[..., nn.Module]) -> set[str] | None:
    """Keyword options a constructor takes beyond the shape arguments; None if it takes any."""
    params = inspect.signature(ctor).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"channels", "num_classes", "image_size"}


def build_model(name: str, channels: int, num_classes: int, image_size: int, **options: Any) -> nn.Module:
    """Build registered backbone ``name`` for images of shape (channels, image_size, image_size)."""
    if name not in MODELS:
        raise ConfigError(f"unknown backbone {name!r}; valid choices: {', '.join(MODELS.names())}")
    options.pop("_target_", None)  # tolerate a whole yaml node minus `name` being splatted in
    ctor = MODELS.get(name).obj
    accepted = _accepted_options(ctor)
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise ConfigError(
                f"backbone {name!r} has no option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(sorted(accepted)) or '(none)'}"
            )
    return ctor(channels=channels, num_classes=num_classes, image_size=image_size, **options)


def count_parameters(model: nn.Module) -> int:
    """Total number of parameter elements (the figure papers report, e.g. 320,010 for ConvNet-3)."""
    return sum(p.numel() for p in model.parameters())


# Imported last: the submodules register themselves with the decorator defined above.
from dfdistill.models import convnet, resnet, small  # noqa: E402,F401

def convnet_depth(image_size: int) -> int:
    """Blocks of the papers' ConvNet at this input size: 3 at 32 px (and below: 28 px MNIST pads to
    32), 4 at 64 px (Tiny-ImageNet, ImageNet-1K 64), 5 at 128 px, so the last map is 4x4 (2048
    features at width 128). Exp files use it as `backbone.depth: ${convnet_depth:${dataset.image_size}}`."""
    size = int(image_size)
    return max(3, size.bit_length() - 3) if size > 0 else 3


__all__ = ["MODELS", "build_model", "convnet_depth", "count_parameters", "register"]
