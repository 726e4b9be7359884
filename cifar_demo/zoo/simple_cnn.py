"""A simple two-conv CNN: most of its 6.4M parameters sit in one big dense layer.

    conv3x3(3->32, no pad) ReLU BN  -> 30x30
    conv3x3(32->64, no pad) ReLU maxpool2 BN  -> 14x14
    flatten (64*14*14 = 12,544) -> dense 512 ReLU dropout 0.5 -> dense 10
"""

from __future__ import annotations

from torch import nn

from .registry import recipe, register_model
from .sources import SIMPLE_CNN_PROJECT


def simple_cnn_layers(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(inplace=True), nn.BatchNorm2d(32),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.BatchNorm2d(64),
        nn.Flatten(),
        nn.Linear(64 * 14 * 14, 512), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(512, num_classes),
    )


@register_model(
    name="simple_cnn", source="simple CNN baseline", reported_accuracy=77.63, project=SIMPLE_CNN_PROJECT,
    recipe_source="source",
    recipe_note=("Adam lr 1e-3, weight decay 1e-4, batch 64, 10 epochs as the source states; it names "
                 "no schedule and no augmentation pipeline: constant lr, none."),
    params=6_447_754, macs=21_655_936,
    description="Two unpadded conv layers with BatchNorm, one max-pool, then a 12,544->512 dense layer.",
    # The source: Adam 1e-3, weight decay 1e-4, batch 64, 10 epochs, no augmentation.
    recipe=recipe(epochs=10, batch_size=64, optimizer="adam", lr=1e-3, weight_decay=1e-4,
                  schedule="constant", augment="none"),
)
def simple_cnn(num_classes: int = 10) -> nn.Sequential:
    return simple_cnn_layers(num_classes)
