"""What one session of a run is built from (the engine's setup phase): the device and
precision, the data and its loader, the model, optimizer, schedule, scaler, EMA, Lookahead,
batch mixer and the step meter, in one `Parts` object.

Building is deterministic in the config's seed: a resumed run rebuilds the same parts, then
loads the checkpoint into them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import augment, runtime, zoo
from .. import data as data_mod
from ..augment.ops import random_window
from ..common import CLASSES, pick_device
from ..recipe import TrainConfig
from .dist import StepMeter
from .distill import attach
from .optim import build_optimizer
from .optimizers import Lookahead
from .precision import autocast_dtype, grad_scaler
from .schedule import build_scheduler
from .state import seed_everything
from .transfer import load_init, recompute_bn_stats

# Steps between step events where reading the step metrics costs a sync (see log_every_for).
LOG_EVERY = 20


def log_every_for(device: torch.device, world_size: int) -> int:
    """Steps per step event by default. On one CPU process reading the metrics costs nothing
    (the step has already run), so every step is reported; on an accelerator a read waits for
    the queued kernels, and with several ranks it is also an all-reduce."""
    return 1 if device.type == "cpu" and world_size == 1 else LOG_EVERY


@dataclass
class Parts:
    """Everything a step, an evaluation or a checkpoint of this session uses."""

    device: torch.device
    amp_dtype: torch.dtype | None
    data: Any                       # data.CifarData (the dataset's source and classes)
    train: Any                      # data.Split, after train_limit
    val: Any
    test: Any                       # after test_limit
    loader: Any                     # data.TensorLoader or data.PerImageLoader
    model: nn.Module                # what runs forward (DDP-wrapped with several ranks)
    raw_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: Any                        # torch.optim.swa_utils.AveragedModel or None
    lookahead: Lookahead | None
    mixer: Any                      # augment.BatchMixer or None
    meter: StepMeter
    log_every: int
    steps_per_epoch: int
    total_steps: int
    pretrained: frozenset = frozenset()  # parameter names copied from cfg.init_from (empty: none)
    started: float = 0.0            # perf_counter() when this session's training began
    elapsed_before: float = 0.0     # training time of the earlier sessions
    session_images: int = 0
    session_steps: int = 0

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the EMA's when EMA is on."""
        return self.ema.module if self.ema is not None else self.raw_model


def build_parts(cfg: TrainConfig, data=None, *, rank: int = 0, world_size: int = 1, local_rank: int = 0,
                log_every: int | None = None) -> Parts:
    """The parts of a session. `data`: a loaded data.CifarData, else data.load_dataset(cfg.data):
    CIFAR-10 or a dataset of your own images; the model's head is sized by its classes."""

    device = pick_device(cfg.device)
    if world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    amp_dtype = autocast_dtype(cfg.precision, device)
    seed_everything(cfg.seed)
    data, train, val, test = load_data(cfg, data)
    loader = make_loader(cfg, train, device, rank, world_size)
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {cfg.batch_size} is larger than the {len(train)} training images")
    total_steps = steps_per_epoch * cfg.epochs
    classes = tuple(data.classes)
    raw_model, pretrained = build_model(cfg, train, device, classes)
    if cfg.low_res:
        check_low_res(raw_model, cfg.low_res, train.images.shape[-1], device)
    model = raw_model
    if world_size > 1:

        model = DDP(raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = build_optimizer(cfg, raw_model, pretrained)
    ema = None
    if cfg.ema > 0:

        ema = AveragedModel(raw_model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)
    return Parts(device=device, amp_dtype=amp_dtype, data=data, train=train, val=val, test=test,
                 loader=loader, model=model, raw_model=raw_model, optimizer=optimizer,
                 scheduler=build_scheduler(cfg, optimizer, total_steps, steps_per_epoch),
                 scaler=grad_scaler(amp_dtype, device), ema=ema,
                 lookahead=Lookahead(raw_model) if cfg.lookahead_every else None,
                 mixer=augment.BatchMixer(cfg.mixes, num_classes=len(classes), alpha=cfg.mix_alpha)
                 if cfg.mixes else None,
                 meter=StepMeter(device), log_every=log_every or log_every_for(device, world_size),
                 steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                 pretrained=pretrained)


def downscale(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch shrunk to size x size (progressive resizing, TrainConfig.low_res): bilinear with
    antialiasing, so the small image is an average of the large one's pixels, not a sample."""
    small = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    return small.contiguous(memory_format=torch.channels_last) if channels_last else small


def random_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """A random size x size window of each image (TrainConfig.low_res_mode "crop"): the pixels
    keep their scale, so objects are as large as at full size, with less around them."""

    window = random_window(images, (size, size))
    channels_last = images.is_contiguous(memory_format=torch.channels_last)
    return window.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def shrink(images: torch.Tensor, size: int, mode: str = "resize") -> torch.Tensor:
    """The low-resolution batch of a progressive-resizing epoch (LOW_RES_MODES)."""
    return random_crop(images, size) if mode == "crop" else downscale(images, size)


@torch.no_grad()
def check_low_res(model: nn.Module, size: int, full: int, device: torch.device) -> None:
    """ValueError unless `model` takes size x size images (a clear refusal before the first step)."""
    if size >= full:
        raise ValueError(f"low_res {size} must be below the images' size ({full}x{full})")
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, 3, size, size, device=device))
    except RuntimeError as e:
        raise ValueError(f"this model cannot train on {size}x{size} images (low_res): {e}") from None
    finally:
        model.train(was_training)


def load_data(cfg: TrainConfig, data=None):
    """(dataset, train split after train_limit, validation split, test split after test_limit)."""
    if data is None:
        data = data_mod.load_dataset(cfg.data, val_size=cfg.val_size, seed=cfg.seed)
    train = data.train
    if cfg.distill:
        train = attach(train, cfg.distill)  # checks the file was made for these images
    if cfg.train_limit:
        train = data_mod.stratified_subset(train, cfg.train_limit, seed=cfg.seed)
    test = data.test
    if cfg.test_limit:
        test = data_mod.subset(test, range(min(cfg.test_limit, len(test))))
    return data, train, data.val, test


def make_loader(cfg: TrainConfig, train, device: torch.device, rank: int = 0, world_size: int = 1):
    """Device presets batch on the device (TensorLoader); per-image ones run in DataLoader workers."""
    if augment.preset_kind(cfg.augment) == "device":
        return data_mod.TensorLoader(train, cfg.batch_size, shuffle=True, drop_last=True,
                                     augment=cfg.augment, device=device, seed=cfg.seed,
                                     channels_last=channels_last(cfg, device),
                                     rank=rank, world_size=world_size)
    workers = runtime.current().loader_workers(cfg.num_workers)   # none inside a ZeroGPU call
    return data_mod.PerImageLoader(train, cfg.augment, cfg.batch_size, num_workers=workers, seed=cfg.seed,
                                   drop_last=True, device=device,
                                   rank=rank, world_size=world_size)


def channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.channels_last and device.type in ("cpu", "cuda")


def build_model(cfg: TrainConfig, train, device: torch.device, classes=None) -> tuple[nn.Module, frozenset[str]]:
    """(cfg.model for `classes` (default: CIFAR-10's ten), the names of the parameters copied from
    cfg.init_from). Initialised from cfg.init_from's weights, else at random and, for models that
    learn from the data before training (airnet's patch whitening), from `train`."""

    classes = tuple(classes or CLASSES)
    torch.manual_seed(cfg.seed)
    model = zoo.create(cfg.model, num_classes=len(classes), **cfg.model_kwargs)
    copied: set[str] = set()
    if cfg.init_from:
        # The whitening is NOT re-learnt from the new images: it is copied with the rest. The
        # pretrained filters of the next layer were trained on exactly the CIFAR-10 whitening's
        # output channels; new eigenvectors come in another order and with arbitrary signs,
        # which would scramble that layer's input. Whitening is a fixed, generic decorrelation
        # of 2x2 patches; CIFAR-10's is a good one for any photo shrunk to 32x32.
        copied = load_init(cfg, model, classes)
    elif isinstance(model, zoo.InitFromData):  # the model's hook (zoo.hooks)
        # A seeded random 5,000 (split files may be sorted by class).
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))[:5000]
        model.init_from_data(train.images[pick])
    model = model.to(device)
    if channels_last(cfg, device):
        model = model.to(memory_format=torch.channels_last)
    if cfg.bn_stats == "recompute":
        recompute_bn_stats(model, train.images, seed=cfg.seed)
    return model, frozenset(copied)
