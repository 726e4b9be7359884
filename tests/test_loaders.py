"""Tests for cifar_demo.data's loaders: TensorLoader (device presets) and PerImageLoader
(per-image presets). Both must make each epoch a function of (seed, epoch, rank) only, so
that a resumed run sees the batches an uninterrupted one would have seen."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import data as D
from cifar_demo.common import CIFAR_MEAN

# --- TensorLoader ----------------------------------------------------------------------


def _split(n: int = 50) -> D.Split:
    g = torch.Generator().manual_seed(0)
    return D.Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.arange(n) % 10)


def _batches(it) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in it]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def test_tensor_loader_shapes_and_exact_pictures():
    split = _split(50)
    loader = D.TensorLoader(split, 16, shuffle=False)
    batches = _batches(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    # Pictures in [0, 1], exactly: the model normalises them itself.
    assert torch.equal(x, split.images[:16].float() / 255)
    assert torch.equal(y, split.labels[:16])
    assert len(D.TensorLoader(split, 16, drop_last=True)) == 3
    xb, _ = next(iter(D.TensorLoader(split, 8, dtype=torch.bfloat16, channels_last=True)))
    assert xb.dtype == torch.bfloat16 and xb.is_contiguous(memory_format=torch.channels_last)


def test_tensor_loader_epoch_depends_only_on_seed_and_epoch():
    split = _split()
    a = D.TensorLoader(split, 16, augment="standard", cutout=8, seed=5)
    first, second = _batches(a), _batches(a)  # iterating moves to the next epoch
    assert not _same(first, second)
    fresh = D.TensorLoader(split, 16, augment="standard", cutout=8, seed=5)
    fresh.set_epoch(1)
    assert _same(_batches(fresh), second)  # no history needed
    assert _same(_batches(D.TensorLoader(split, 16, augment="standard", cutout=8, seed=5)), first)
    assert not _same(_batches(D.TensorLoader(split, 16, augment="standard", cutout=8, seed=6)), first)
    # same labels as the plain order, images augmented
    plain = _batches(D.TensorLoader(split, 16, seed=5))
    assert all(torch.equal(y, v) for (_, y), (_, v) in zip(first, plain))
    assert not all(torch.equal(x, u) for (x, _), (u, _) in zip(first, plain))
    # in a fixed order, each epoch still augments afresh
    ordered = D.TensorLoader(split, 16, shuffle=False, augment="standard", seed=5)
    assert not _same(_batches(ordered), _batches(ordered))


def test_tensor_loader_cutout_holes_are_the_mean_colour():
    split = _split(16)
    (plain, _), = _batches(D.TensorLoader(split, 16, shuffle=False))
    (holed, _), = _batches(D.TensorLoader(split, 16, shuffle=False, cutout=8))
    hole = holed != plain
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1).expand_as(holed)
    assert torch.equal(holed[hole], mean[hole])  # the mean colour, which the model normalises to 0
    per_image = hole.all(dim=1).flatten(1).sum(1)  # hole pixels (all channels) per image
    assert torch.all((per_image >= 16) & (per_image <= 64)), per_image


def test_tensor_loader_resumes_mid_epoch():
    loader = D.TensorLoader(_split(), 8, augment="standard", seed=2)
    whole = _batches(loader.iter_from(3))
    assert _same(_batches(loader.iter_from(3, start_batch=4)), whole[4:])


def test_tensor_loader_shards_are_disjoint_and_equal():
    split = _split(50)
    loaders = [D.TensorLoader(split, 4, seed=1, rank=r, world_size=3) for r in range(3)]
    shards = [set(ld.indices(7).tolist()) for ld in loaders]
    assert [len(s) for s in shards] == [16, 16, 16] and len({len(ld) for ld in loaders}) == 1
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    labels = torch.cat([y for ld in loaders for _, y in ld.iter_from(7)])
    assert sorted(labels.tolist()) == sorted(split.labels[sorted(set.union(*shards))].tolist())


def test_tensor_loader_rejects_per_image_presets():
    with pytest.raises(ValueError, match="PerImageLoader"):
        D.TensorLoader(_split(), 8, augment="seed004")


# --- PerImageLoader ------------------------------------------------------------------


@pytest.mark.parametrize("preset", ["seed004", "autoaugment"])
def test_per_image_loader_shapes_and_determinism(preset):
    split = _split(20)
    loader = D.PerImageLoader(split, preset, batch_size=8, num_workers=0, seed=3)
    batches = _batches(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [8, 8, 4]
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(split.labels.tolist())
    again = D.PerImageLoader(split, preset, batch_size=8, num_workers=0, seed=3)
    assert _same(_batches(again), batches)
    assert not _same(_batches(again), batches)  # epoch 1 differs from epoch 0
    # in a fixed order, each epoch and each seed still augments afresh
    ordered = D.PerImageLoader(split, preset, batch_size=8, num_workers=0, shuffle=False, seed=3)
    epoch0 = _batches(ordered)
    assert torch.equal(torch.cat([y for _, y in epoch0]), split.labels)
    assert not _same(_batches(ordered), epoch0)
    other = D.PerImageLoader(split, preset, batch_size=8, num_workers=0, shuffle=False, seed=4)
    assert not _same(_batches(other), epoch0)


def test_per_image_loader_resumes_mid_epoch_and_shards():
    split = _split(20)
    loader = D.PerImageLoader(split, "autoaugment", batch_size=4, num_workers=0, seed=2)
    whole = _batches(loader.iter_from(3))
    assert _same(_batches(loader.iter_from(3, start_batch=2)), whole[2:])
    assert _same(_batches(loader.iter_from(3)), whole)  # the skip applies once
    shards = [D.PerImageLoader(split, "seed004", 2, num_workers=0, rank=r, world_size=3)
              for r in range(3)]
    labels = [torch.cat([y for _, y in ld]) for ld in shards]
    assert [len(y) for y in labels] == [6, 6, 6] and len({len(ld) for ld in shards}) == 1
    idx = [set(ld.sampler) for ld in shards]
    assert not (idx[0] & idx[1]) and not (idx[1] & idx[2]) and not (idx[0] & idx[2])


def test_per_image_loader_does_not_depend_on_workers():
    split = _split(12)
    serial = D.PerImageLoader(split, "seed004", batch_size=4, num_workers=0, seed=1)
    workers = D.PerImageLoader(split, "seed004", batch_size=4, num_workers=2, seed=1)
    serial.set_epoch(2)
    workers.set_epoch(2)
    assert _same(_batches(serial), _batches(workers))


def test_per_image_loader_rejects_device_presets():
    with pytest.raises(ValueError, match="TensorLoader"):
        D.PerImageLoader(_split(), "standard", batch_size=4)


def test_alternating_flip_shows_each_image_on_both_sides_every_two_epochs():
    split = _split(64)
    plain = split.images.float() / 255
    loader = D.TensorLoader(split, 64, shuffle=False, flip="alternate", seed=3)
    def flipped(epoch):
        (x, _), = _batches(loader.iter_from(epoch))
        same = (x - plain).abs().flatten(1).amax(1) < 1e-5
        mirrored = (x - plain.flip(-1)).abs().flatten(1).amax(1) < 1e-5
        assert torch.all(same ^ mirrored)  # every image is exactly one of the two
        return mirrored

    e0, e1, e2 = flipped(0), flipped(1), flipped(2)
    assert 10 < int(e0.sum()) < 54  # a random side per image to start with
    assert torch.equal(e1, ~e0) and torch.equal(e2, e0)  # then the other side, then back
    # the bits follow the seed, not the loader's history or the shuffled order
    assert torch.equal(D.TensorLoader(split, 64, shuffle=False, flip="alternate", seed=3)._flip_bits, e0)
    assert not torch.equal(D.TensorLoader(split, 64, shuffle=False, flip="alternate", seed=4)._flip_bits, e0)
    shuffled = D.TensorLoader(split, 16, augment="translate2_altflip", seed=3)
    assert shuffled.flip == "alternate" and shuffled.crop_pad == 2 and torch.equal(shuffled._flip_bits, e0)
