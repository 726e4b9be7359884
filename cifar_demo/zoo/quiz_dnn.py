"""QuizDNN: a densely summed 64-channel CNN (x_k sees the sum of the earlier maps in its block).

    x1 = C(input)          x5 = C(x4)             x9  = C(x8)
    x2 = C(x1)             x6 = C(x4 + x5)        x10 = C(x8 + x9)
    x3 = C(x1 + x2)        x7 = C(x4 + x5 + x6)   x11 = C(x8 + x9 + x10)
    x4 = P(x1 + x2 + x3)   x8 = P(x5 + x6 + x7)   x12 = GAP(x11), x13 = FC(x12)

C is conv3x3 (with bias) -> ReLU -> BatchNorm, P is 2x2 max-pool. The sums give every
layer a short path to the block input, like a DenseNet that adds instead of concatenating.
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import recipe, register_model
from .sources import QUIZ_DNN_PROJECT

WIDTH = 64


def conv(c_in: int) -> nn.Sequential:
    # The source's order: ReLU before BatchNorm.
    return nn.Sequential(nn.Conv2d(c_in, WIDTH, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(WIDTH))


class QuizDNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.c1, self.c2, self.c3 = conv(3), conv(WIDTH), conv(WIDTH)
        self.c5, self.c6, self.c7 = conv(WIDTH), conv(WIDTH), conv(WIDTH)
        self.c9, self.c10, self.c11 = conv(WIDTH), conv(WIDTH), conv(WIDTH)
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(WIDTH, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.c1(x)
        x2 = self.c2(x1)
        x3 = self.c3(x1 + x2)
        x4 = self.pool(x1 + x2 + x3)
        x5 = self.c5(x4)
        x6 = self.c6(x4 + x5)
        x7 = self.c7(x4 + x5 + x6)
        x8 = self.pool(x5 + x6 + x7)  # as in the source: x4 is not in this sum
        x9 = self.c9(x8)
        x10 = self.c10(x8 + x9)
        x11 = self.c11(x8 + x9 + x10)
        return self.fc(self.gap(x11).flatten(1))


@register_model(
    name="quiz_dnn", source="QuizDNN", reported_accuracy=81.67, project=QUIZ_DNN_PROJECT,
    recipe_source="ours",
    recipe_note=("SGD lr 0.05, momentum 0.9 and albumentations are the source's; it names no schedule "
                 "or pipeline and its example loop runs 10 epochs: 20 epochs of step decay and the "
                 "seed004 pipeline are ours."),
    params=299_018, macs=112_657_024,
    description="Nine 64-channel conv layers whose inputs are sums of the earlier maps, two max-pools, GAP, linear.",
    # SGD lr 0.05 momentum 0.9 and albumentations per the source. It offers an L1 penalty,
    # off by default (l1=0). It names no schedule, and its example loop runs 10 epochs: step
    # decay over 20 epochs is ours.
    recipe=recipe(epochs=20, batch_size=128, optimizer="sgd", lr=0.05, momentum=0.9,
                  schedule="step", step_size=8, step_gamma=0.1, augment="seed004"),
)
def quiz_dnn(num_classes: int = 10) -> QuizDNN:
    return QuizDNN(num_classes)
