"""Batches for training: TensorLoader (device presets, whole batches on the device) and
PerImageLoader (per-image presets, through DataLoader workers).

Both yield (normalised float NCHW images, int64 labels), and both make each epoch's order
and augmentation a function of (seed, epoch, rank) only, so a resumed run sees exactly
the batches an uninterrupted one would have seen. A split that carries a teacher's class
probabilities (Split.soft, for distillation) gives (images, labels, probabilities) instead.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from .. import augment as aug
from ..common import CIFAR_MEAN, to_unit
from .dataset import Split


def _mix_seed(*parts: int) -> int:
    """One well-mixed 63-bit seed from integers: (seed, epoch) and (seed + 1, epoch - 1) differ."""
    entropy = [p & 0xFFFF_FFFF_FFFF_FFFF for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


class TensorLoader:
    """Batches from a split held whole on the device, augmented a whole batch at a time.

    Yields (normalised float NCHW images, int64 labels). Each epoch's order and augmentation
    depend only on (seed, epoch, rank) - never on what ran before - so a resumed run sees
    exactly the batches it would have seen: `set_epoch(e)`, or `iter_from(e, batch)` in the
    middle of an epoch. Iterating uses `self.epoch` and moves to the next epoch once the
    pass is complete. The random numbers are drawn on the CPU, so they do not depend on
    the device either.

    augment: a device preset (augment.DEVICE_PRESETS); crop_pad/flip/cutout override its settings.
    flip may be True (each image at random, every epoch) or "alternate" (airbench: a random
    side per image in even epochs, the other side in odd epochs).
    device: None keeps the split where it is. With world_size > 1 each rank gets a disjoint
    shard of every epoch's permutation, all of the same size (up to world_size - 1 images
    of an epoch are left out, different ones each epoch).
    """

    def __init__(self, split: Split, batch_size: int, shuffle: bool = True, drop_last: bool = False,
                 augment: str = "none", crop_pad: int | None = None, flip: bool | str | None = None,
                 cutout: int | None = None,
                 device: str | torch.device | None = None, seed: int = 0, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32, rank: int = 0, world_size: int = 1):
        if augment not in aug.DEVICE_PRESETS:
            raise ValueError(f"augment={augment!r} is not a device preset ({', '.join(aug.DEVICE_PRESETS)}); "
                             "per-image presets run through PerImageLoader")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        settings = dict(aug.DEVICE_PRESETS[augment])
        for key, value in (("crop_pad", crop_pad), ("flip", flip), ("cutout", cutout)):
            if value is not None:
                settings[key] = value
        self.crop_pad, self.flip, self.cutout = settings["crop_pad"], settings["flip"], settings["cutout"]
        self.device = torch.device(device) if device is not None else split.images.device
        self.images = split.images.to(self.device).contiguous()
        self.labels = split.labels.to(self.device)
        self.soft = None if split.soft is None else split.soft.to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.dtype, self.channels_last = dtype, channels_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0
        # flip="alternate": one random bit per image for the whole run (same on every rank).
        self._flip_bits = None
        if self.flip == "alternate":
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, 0xF11B))
            self._flip_bits = (torch.rand(len(self.labels), generator=gen) < 0.5).to(self.device)

    @property
    def shard_size(self) -> int:
        """Images this rank sees per epoch."""
        return len(self.labels) // self.world_size

    def __len__(self) -> int:
        n, b = self.shard_size, self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, epoch: int) -> Tensor:
        """This rank's order of sample indices for `epoch` (CPU int64)."""
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(_mix_seed(self.seed, epoch)))
        else:
            order = torch.arange(n)
        per = self.shard_size
        return order[self.rank * per:(self.rank + 1) * per]

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of `epoch` from batch index `start_batch` on (to resume mid-epoch)."""
        order = self.indices(epoch).to(self.device)
        augmenting = self.crop_pad > 0 or self.flip or self.cutout > 0
        for b in range(start_batch, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x, y = self.images[idx], self.labels[idx]
            # A generator per batch: resuming at batch b needs no replay of batches 0..b-1.
            gen = torch.Generator().manual_seed(_mix_seed(self.seed, epoch, self.rank, b)) if augmenting else None
            # Crop and flip on uint8 (a quarter of the bytes of float32)...
            x = aug.batch_crop(x, self.crop_pad, gen)
            if self._flip_bits is not None:
                x = aug.flip_where(x, self._flip_bits[idx] ^ bool(epoch % 2))
            elif self.flip:
                x = aug.batch_flip(x, gen)
            x = to_unit(x).to(self.dtype)
            # ...cutout in floats: the hole is the mean colour, which the model normalises to 0
            # (DeVries & Taylor).
            x = aug.batch_cutout(x, self.cutout, gen, fill=CIFAR_MEAN)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            # Crops and flips keep the picture's class, so the teacher's probabilities for the
            # whole image stand for every view of it.
            yield (x, y) if self.soft is None else (x, y, self.soft[idx])

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from self.iter_from(self.epoch)
        self.epoch += 1


class _PerImageDataset(torch.utils.data.Dataset):
    """Images of a split through an albumentations or torchvision pipeline, one at a time.

    Each image is augmented with a seed made of (loader seed, epoch, index), so the result
    does not depend on num_workers nor on which worker draws it.
    """

    def __init__(self, split: Split, preset: str):
        self.images, self.labels = split.images.cpu(), split.labels.cpu()
        self.soft = None if split.soft is None else split.soft.cpu()
        self.albu = aug.build_albumentations(preset)
        self.tv = None if self.albu is not None else aug.build_torchvision(preset)
        if self.albu is None and self.tv is None:
            raise ValueError(f"{preset!r} is not a per-image preset (albumentations or torchvision); "
                             "device presets run through TensorLoader")
        self.epoch_seed = 0  # set by the loader before each epoch, copied into the workers

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, ...]:
        seed = _mix_seed(self.epoch_seed, i)
        img = self.images[i]  # uint8 3,32,32
        if self.albu is not None:
            aug.reseed_albumentations(self.albu, seed % 2**32)
            out = self.albu(image=img.permute(1, 2, 0).numpy())["image"]  # HWC uint8 in and out
            x = torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)
        else:
            with torch.random.fork_rng(devices=[]):  # torchvision draws from torch's global RNG
                torch.manual_seed(seed)
                x = self.tv(img)
        return (x, self.labels[i]) if self.soft is None else (x, self.labels[i], self.soft[i])


def _collate(batch) -> tuple[Tensor, ...]:
    images, *rest = zip(*batch)   # rest: the labels, and the teacher's probabilities if any
    return (to_unit(torch.stack(images)).contiguous(), *(torch.stack(r) for r in rest))


class _ResumableSampler(torch.utils.data.DistributedSampler):
    """DistributedSampler that skips the first `skip` indices of its next epoch (to resume)."""

    skip = 0

    def __iter__(self):
        # One-shot: the DataLoader may start iterating the sampler lazily, after iter_from returned.
        skip, self.skip = self.skip, 0
        return itertools.islice(super().__iter__(), skip, None)


class PerImageLoader(torch.utils.data.DataLoader):
    """DataLoader for per-image presets (augment.build_albumentations / build_torchvision),
    yielding (normalised float32 NCHW images, int64 labels), moved to `device` if given.

    Same contract as TensorLoader: order and augmentation depend only on (seed, epoch),
    `set_epoch`, `iter_from(epoch, start_batch)`, iterating moves to the next epoch, and
    rank/world_size give disjoint shards of equal size. Workers are not persistent: each
    epoch's seed travels with the dataset into that epoch's workers.
    """

    def __init__(self, split: Split, preset: str, batch_size: int, num_workers: int = 2,
                 shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 device: str | torch.device | None = None, pin_memory: bool | None = None):
        dataset = _PerImageDataset(split, preset)
        # DistributedSampler also serves world_size=1: a permutation seeded by seed + epoch.
        # Shards are disjoint (drop_last) as in TensorLoader, rather than padded with repeats.
        sampler = _ResumableSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                    seed=seed, drop_last=world_size > 1)
        self.target = torch.device(device) if device is not None else None
        if pin_memory is None:
            pin_memory = self.target is not None and self.target.type == "cuda"
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                         drop_last=drop_last, pin_memory=pin_memory,
                         collate_fn=_collate)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def iter_from(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """The batches of `epoch` from batch index `start_batch` on (to resume mid-epoch)."""
        self.sampler.set_epoch(epoch)
        self.sampler.skip = start_batch * self.batch_size
        self.dataset.epoch_seed = _mix_seed(self.seed, epoch)
        for batch in super().__iter__():  # workers start here, with this epoch's seed
            if self.target is not None:
                batch = tuple(t.to(self.target, non_blocking=True) for t in batch)
            yield batch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from self.iter_from(self.epoch)
        self.epoch += 1
