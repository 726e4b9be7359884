"""airnet: our speed-first net, after KellerJordan/cifar10-airbench (airbench94).

    whiten  conv2x2(3->24, no pad), frozen weights set from the data       32 -> 31
    GELU
    group1  conv3x3(24->64)   maxpool2 BN GELU conv3x3(64->64)   BN GELU  31 -> 15
    group2  conv3x3(64->256)  maxpool2 BN GELU conv3x3(256->256) BN GELU  15 -> 7
    group3  conv3x3(256->256) maxpool2 BN GELU conv3x3(256->256) BN GELU   7 -> 3
    global max over the last map (3x3 -> 1x1), Linear(256->10, no bias), logits x 1/9

Why it trains fast: the whitening conv decorrelates 2x2 patches before any learning, so the
first layers start from a well-conditioned input; pooling right after the first conv of
each group does the expensive 3x3 work at a quarter of the resolution; no residuals.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..common import normalize
from .hooks import OwnGroup
from .registry import recipe, register_model

WIDTHS = (64, 256, 256)
WHITEN_KERNEL = 2
WHITEN_WIDTH = 2 * 3 * WHITEN_KERNEL**2  # 12 eigen-filters and their negatives
LOGIT_SCALE = 1 / 9                       # airbench's fixed output scale, tuned with its lr


def conv(c_in: int, c_out: int) -> nn.Conv2d:
    c = nn.Conv2d(c_in, c_out, 3, padding="same", bias=False)
    # airbench's identity init: the first c_in filters pass their input through (Dirac),
    # so each group starts as an implicit residual of the one before.
    nn.init.dirac_(c.weight.data[:c_in])
    return c


def batchnorm(c: int) -> nn.BatchNorm2d:
    # airbench: running-stat momentum 0.6 in its convention = 0.4 in PyTorch's; the scale
    # is frozen at 1 (only the shift learns). We keep PyTorch's eps (airbench uses 1e-12,
    # which is only safe with its fp32 BatchNorm inside an fp16 net).
    bn = nn.BatchNorm2d(c, momentum=0.4)
    bn.weight.requires_grad = False
    return bn


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = batchnorm(c_out)
        self.conv2 = conv(c_out, c_out)
        self.norm2 = batchnorm(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.norm1(self.pool(self.conv1(x))))
        return F.gelu(self.norm2(self.conv2(x)))


class AirNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = WIDTHS):
        super().__init__()
        # Frozen weights (set by init_whitening); the bias stays trainable and starts at 0.
        # airbench trains that bias for the first 3 epochs only: own_param_groups tells the engine.
        self.whiten = nn.Conv2d(3, WHITEN_WIDTH, WHITEN_KERNEL, padding=0, bias=True)
        self.whiten.weight.requires_grad = False
        nn.init.zeros_(self.whiten.bias)
        self.group1 = ConvGroup(WHITEN_WIDTH, widths[0])
        self.group2 = ConvGroup(widths[0], widths[1])
        self.group3 = ConvGroup(widths[1], widths[2])
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def init_from_data(self, images: torch.Tensor) -> None:
        """The training engine's hook: whiten from uint8 NCHW training images."""
        init_whitening(self, normalize(images))

    def own_param_groups(self, cfg) -> list[OwnGroup]:
        """The training engine's hook (zoo.hooks.OwnsParamGroups): the whitening bias is group
        "whiten_bias", at lr x cfg.whiten_bias_lr_mult (weight decay / that), learning for the
        first cfg.whiten_bias_epochs epochs only (0: throughout). With neither set it follows
        the generic rules (it is then in "main")."""
        if not (cfg.whiten_bias_epochs or cfg.whiten_bias_lr_mult != 1.0):
            return []
        return [OwnGroup("whiten_bias", [self.whiten.bias], lr_mult=cfg.whiten_bias_lr_mult,
                         stop_after_epochs=cfg.whiten_bias_epochs)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.whiten(x))
        x = self.group3(self.group2(self.group1(x)))
        # A max over the whole last map: airbench's MaxPool2d(3) on the 3x3 map of a 32x32 image,
        # and still one value per channel on the smaller maps of a low-resolution epoch (low_res).
        x = x.amax(dim=(2, 3))
        return self.head(x) * LOGIT_SCALE


def get_patches(images: torch.Tensor, size: int = WHITEN_KERNEL) -> torch.Tensor:
    """Every size x size patch of an NCHW batch, as (num_patches, C, size, size)."""
    c = images.shape[1]
    return images.unfold(2, size, 1).unfold(3, size, 1).transpose(1, 3).reshape(-1, c, size, size)


@torch.no_grad()
def init_whitening(model: AirNet, images: torch.Tensor, eps: float = 5e-4) -> torch.Tensor:
    """Set the whitening filters from normalised training images (e.g. 5,000 of them).

    The filters are the eigenvectors of the 2x2-patch second-moment matrix, each divided by
    sqrt(eigenvalue + eps), followed by their negatives (so GELU keeps both signs). On those
    patches the first 12 output channels (before the bias) then have second moments
    diag(eigenvalue / (eigenvalue + eps)), close to the identity. Returns the eigenvalues.
    """
    weight = model.whiten.weight
    patches = get_patches(images.to(torch.float64), weight.shape[-1]).flatten(1)
    cov = patches.T @ patches / len(patches)  # uncentred, as airbench: inputs are normalised
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)  # largest first
    filters = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + eps)[:, None]).reshape(-1, *weight.shape[1:])
    weight.copy_(torch.cat([filters, -filters]).to(weight.dtype))
    return eigenvalues


@register_model(
    name="airnet", source="ours: speed first (after airbench94)", reported_accuracy=None,
    recipe_source="ours",
    recipe_note=("The settings of airbench94, its lr and weight decay (per 1024 examples, summed loss) "
                 "converted for a mean loss; its full method is the airbench94 and fast presets."),
    params=1_972_792, macs=118_147_360,
    description="airbench94-style net: frozen 2x2 patch-whitening conv, three conv groups 64/256/256, no residuals.",
    # airbench94: 9.9 epochs at batch 1024, Nesterov SGD momentum 0.85, label smoothing 0.2,
    # flips and 2-pixel translations. Its lr 11.5 and wd 0.0153 are "per 1024 examples" on a
    # summed loss; for a mean loss at batch 1024 that is lr = 11.5 / (1 + 1/(1-0.85)) = 1.5
    # and wd = 0.0153 * 1024 / 7850.7 / 1.5 = 1.33e-3. Its schedule is triangular: from 0.2x
    # up to 1x at 23% of training (~2.3 epochs), then linearly down to 0.07x.
    # This is the plain recipe, with pad-4 crops ("standard"); the full method (2-pixel
    # translations, 64x lr on BatchNorm biases, Lookahead, alternating flips, TTA) is the
    # engine's "airbench94" and "fast" presets (train/config.py).
    recipe=recipe(epochs=10, batch_size=1024, optimizer="sgd", lr=1.5, momentum=0.85, nesterov=True,
                  weight_decay=1.33e-3, label_smoothing=0.2, schedule="linear", warmup_epochs=2.3,
                  warmup_from=0.2, final_lr_frac=0.07, augment="standard"),
)
def airnet(num_classes: int = 10) -> AirNet:
    return AirNet(num_classes)
