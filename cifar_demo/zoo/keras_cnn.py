"""The classic Keras CIFAR-10 baseline, written in PyTorch.

Three blocks of two 'same' 3x3 convolutions (32, 64, 128 filters), each followed by
BatchNormalization, then 2x2 max-pooling and a growing Dropout; then two Dense layers.
Keras writes Conv2D(..., activation="relu") followed by BatchNormalization(), so the ReLU
comes before the BatchNorm here too. Dense widths 384 and 256 put it at 1.18M parameters.
"""

from __future__ import annotations

from torch import nn

from .registry import recipe, register_model
from .sources import THREE_NOTEBOOKS_PROJECT


def block(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(c_out),
        nn.MaxPool2d(2), nn.Dropout(dropout),
    )


def dense(n_in: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_out), nn.ReLU(inplace=True), nn.BatchNorm1d(n_out), nn.Dropout(0.5))


def keras_cnn_layers(num_classes: int = 10) -> nn.Sequential:
    return nn.Sequential(
        block(3, 32, 0.2),    # 32x32 -> 16x16
        block(32, 64, 0.3),   # -> 8x8
        block(64, 128, 0.4),  # -> 4x4
        nn.Flatten(),         # 128 * 4 * 4 = 2048
        dense(2048, 384),
        dense(384, 256),
        nn.Linear(256, num_classes),
    )


@register_model(
    name="keras_cnn", source="TensorFlow/Keras baseline", reported_accuracy=88.4,
    project=THREE_NOTEBOOKS_PROJECT, recipe_source="ours",
    recipe_note=("The source states no training settings: a typical Keras setup (Adam 1e-3, "
                 "batch 64, crops and flips) is ours."),
    params=1_177_130, macs=39_520_768,
    description="Keras-style 3x(conv-conv-pool-dropout) blocks of 32/64/128 filters, then Dense 384 and 256.",
    # Typical Keras setup: Adam 1e-3, batch 64, flips and shifts (our "standard").
    recipe=recipe(epochs=50, batch_size=64, optimizer="adam", lr=1e-3, schedule="constant",
                  augment="standard"),
)
def keras_cnn(num_classes: int = 10) -> nn.Sequential:
    return keras_cnn_layers(num_classes)
