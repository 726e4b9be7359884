"""CIFAR ResNets (kuangliu/pytorch-cifar style): 3x3 stride-1 stem, no max-pool, four stages.

resnet18 is the standard CIFAR ResNet-18 (widths 64-512, 11.2M parameters). resnet26/34/50
come from a "ResNet under 5M parameters" course project: the same skeleton with narrow
stages. Its ResNet-34 (BasicBlock [3,4,6,3]) and ResNet-50 (Bottleneck [3,4,6,3]) both
have exactly the reported parameter counts with widths (40, 80, 144, 176), which is how
we recovered them. Its ResNet-26 count (4,196,906) we could not match with a natural
configuration; ours is BasicBlock [2,3,4,3] at widths (64, 112, 144, 192): 4,197,770
parameters, 0.02% more.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import recipe, register_model
from .sources import RESNET_STUDY_PROJECT, THREE_NOTEBOOKS_PROJECT


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut = shortcut(c_in, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1):
        super().__init__()
        c_out = self.expansion * width
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = shortcut(c_in, c_out, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a 1x1 projection (ResNet option B)."""
    if stride == 1 and c_in == c_out:
        return nn.Sequential()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


class ResNet(nn.Module):
    def __init__(self, block: type[BasicBlock | Bottleneck], num_blocks: list[int],
                 widths: tuple[int, ...] = (64, 128, 256, 512), num_classes: int = 10,
                 dropout: float = 0.0):
        super().__init__()
        self.c_in = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)  # CIFAR stem: no stride, no pool
        self.bn1 = nn.BatchNorm2d(widths[0])
        # layer1..layer4 and `linear`: kuangliu's names, so its checkpoints load unchanged.
        self.stages = len(widths)
        for i, (w, n) in enumerate(zip(widths, num_blocks)):
            setattr(self, f"layer{i + 1}", self._make_layer(block, w, n, 1 if i == 0 else 2))
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(self.c_in, num_classes)

    def _make_layer(self, block, width: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(block(self.c_in, width, s))
            self.c_in = width * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            out = getattr(self, f"layer{i + 1}")(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = kuangliu's avg_pool2d(4) at 32x32
        return self.linear(self.dropout(out))


NARROW = (40, 80, 144, 176)  # the "<5M" project's channel progression
FIVE_M_NOTE = ("Nesterov SGD 0.1, cosine, wd 5e-4, batch 64, crops and flips, and this depth's epoch "
               "count, as the source states. It names other augmentations and dropout without saying "
               "which or how much: none here, and dropout 0 (create(name, dropout=p) sets one).")


def _five_m_recipe(epochs: int) -> dict:
    # The source: SGD with Nesterov momentum 0.9, lr 0.1, cosine, wd 5e-4, batch 64,
    # random crops and flips; dropout is a model kwarg (create("resnet50", dropout=...)).
    return recipe(epochs=epochs, batch_size=64, optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True,
                  weight_decay=5e-4, schedule="cosine", augment="standard")


@register_model(
    name="resnet18", source="ResNet-18 (CIFAR variant)", reported_accuracy=93.3,
    project=THREE_NOTEBOOKS_PROJECT, recipe_source="ours",
    recipe_note=("The source names only a learning-rate schedule: the common CIFAR ResNet recipe "
                 "(SGD 0.1, momentum 0.9, wd 5e-4, cosine over 200 epochs, crops and flips) is ours."),
    params=11_173_962, macs=555_422_720,
    description="The standard CIFAR ResNet-18: BasicBlocks [2,2,2,2], widths 64-512, 3x3 stem without pooling.",
    recipe=recipe(epochs=200, batch_size=128, optimizer="sgd", lr=0.1, momentum=0.9,
                  weight_decay=5e-4, schedule="cosine", augment="standard"),
)
def resnet18(num_classes: int = 10, dropout: float = 0.0) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], (64, 128, 256, 512), num_classes, dropout)


@register_model(
    name="resnet26", source="<5M-parameter ResNet study", reported_accuracy=90.29,
    project=RESNET_STUDY_PROJECT, recipe_source="source", recipe_note=FIVE_M_NOTE,
    params=4_197_770, macs=440_518_528,
    description="Narrow ResNet-26: BasicBlocks [2,3,4,3], widths 64/112/144/192 (our reconstruction, 0.02% off "
                "the source's count).",
    recipe=_five_m_recipe(100),
)
def resnet26(num_classes: int = 10, dropout: float = 0.0) -> ResNet:
    return ResNet(BasicBlock, [2, 3, 4, 3], (64, 112, 144, 192), num_classes, dropout)


@register_model(
    name="resnet34", source="<5M-parameter ResNet study", reported_accuracy=95.12,
    project=RESNET_STUDY_PROJECT, recipe_source="source", recipe_note=FIVE_M_NOTE,
    params=4_348_082, macs=366_106_336,
    description="Narrow ResNet-34: BasicBlocks [3,4,6,3], widths 40/80/144/176.",
    recipe=_five_m_recipe(200),
)
def resnet34(num_classes: int = 10, dropout: float = 0.0) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], NARROW, num_classes, dropout)


@register_model(
    name="resnet50", source="<5M-parameter ResNet study", reported_accuracy=95.59,
    project=RESNET_STUDY_PROJECT, recipe_source="source", recipe_note=FIVE_M_NOTE,
    params=4_815_794, macs=407_300_992,
    description="Narrow ResNet-50: Bottleneck blocks [3,4,6,3], widths 40/80/144/176 (x4 out), 704 features.",
    recipe=_five_m_recipe(300),
)
def resnet50(num_classes: int = 10, dropout: float = 0.0) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], NARROW, num_classes, dropout)
