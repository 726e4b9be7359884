"""A 3-block custom CNN: VGG-style blocks of two convolutions, then global pooling.

Each block is conv-BN-ReLU, conv-BN-ReLU, 2x2 max-pool, dropout; the widths 80, 160, 320
put it at 1.79M parameters. Global average pooling keeps the head to one small linear layer.
"""

from __future__ import annotations

from torch import nn

from .registry import recipe, register_model
from .sources import THREE_NOTEBOOKS_PROJECT

WIDTHS = (80, 160, 320)


def conv_bn(c_in: int, c_out: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm right after it has its own shift.
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(*conv_bn(c_in, c_out), *conv_bn(c_out, c_out), nn.MaxPool2d(2), nn.Dropout(dropout))


def custom_cnn_layers(num_classes: int = 10) -> nn.Sequential:
    w1, w2, w3 = WIDTHS
    return nn.Sequential(
        block(3, w1, 0.1),    # 32 -> 16
        block(w1, w2, 0.2),   # 16 -> 8
        block(w2, w3, 0.3),   # 8 -> 4
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(w3, num_classes),
    )


@register_model(
    name="custom_cnn", source="3-block custom CNN", reported_accuracy=93.3,
    project=THREE_NOTEBOOKS_PROJECT, recipe_source="ours",
    recipe_note=("The source states no training settings: a common CIFAR recipe (SGD 0.1, momentum "
                 "0.9, wd 5e-4, cosine, crops and flips) is ours."),
    params=1_793_210, macs=238_144_640,
    description="Three VGG-style blocks (80/160/320 channels) with BatchNorm, max-pool and dropout, then GAP.",
    # Typical strong CIFAR recipe: SGD 0.1 momentum 0.9, wd 5e-4, cosine, crops and flips.
    recipe=recipe(epochs=100, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                  weight_decay=5e-4, schedule="cosine", augment="standard"),
)
def custom_cnn(num_classes: int = 10) -> nn.Sequential:
    return custom_cnn_layers(num_classes)
