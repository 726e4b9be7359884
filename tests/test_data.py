"""Tests for cifar_demo.data: sources, errors, cache, validation split, loaders, bundled sample.

Synthetic sources are tiny folders in tmp_path. Every synthetic image has a unique
colour pattern, so a test can tell which file an array came from.

Fake official files: torchvision's md5 check rejects them, as it must. So the tests check
that rejection (a clear error naming the files), and run the rest of the official path
with torchvision's md5 table swapped for the fake files' md5s: the real check and the real
torchvision loader still run, on files we can write.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cifar_demo import data as D
from cifar_demo.common import CIFAR_MEAN, CIFAR_STD, CLASSES


@pytest.fixture(autouse=True)
def _clean_env(tmp_path, monkeypatch):
    """Each test gets its own cache, its own working directory (./data) and no CIFAR_DEMO_DATA."""
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CIFAR_DEMO_DATA", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


def _pixels(label: int, i: int, split: str) -> np.ndarray:
    """A unique 32x32x3 uint8 image for (split, label, i)."""
    rng = np.random.default_rng([label, i, split == "test"])
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


def make_imagefolder(root: Path, per_class: int = 3, ext: str = "png") -> Path:
    for split in D.SPLITS:
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(_pixels(label, i, split)).save(root / split / cls / f"{i:04d}.{ext}")
    return root


def make_official(root: Path, per_class: int = 2) -> Path:
    """root/cifar-10-batches-py in CIFAR's own pickle format: 5 train batches, 1 test batch."""
    folder = root / D.OFFICIAL_DIR
    folder.mkdir(parents=True)

    def batch(name: str, split: str, start: int) -> None:
        labels = [c for c in range(10) for _ in range(per_class)]
        rows = [_pixels(c, start + k % per_class, split).transpose(2, 0, 1).reshape(-1)
                for k, c in enumerate(labels)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": np.stack(rows),
                         "filenames": [f"{name}_{k}.png" for k in range(len(labels))]}, f, protocol=2)

    for b in range(5):
        batch(f"data_batch_{b + 1}", "train", b * per_class)
    batch("test_batch", "test", 0)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": 10 * per_class, "num_vis": 3072},
                    f, protocol=2)
    return root


def trust_fake_md5s(monkeypatch, root: Path) -> None:
    """Point torchvision's CIFAR-10 md5 table at the fake files of `root`."""
    cls = torchvision.datasets.CIFAR10
    md5 = lambda name: hashlib.md5((root / D.OFFICIAL_DIR / name).read_bytes()).hexdigest()
    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


def forbid_download(monkeypatch) -> None:
    class NoDownload(torchvision.datasets.CIFAR10):
        def download(self):
            raise AssertionError("download must not be tried when a local source exists")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", NoDownload)


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


# --- sources and their order -----------------------------------------------------------


def test_imagefolder_loads_with_labels_pixels_and_label(tmp_path):
    root = make_imagefolder(tmp_path / "export")
    data = D.load_cifar10(root, val_size=10)
    assert (len(data.train), len(data.val), len(data.test)) == (20, 10, 30)
    assert data.classes == CLASSES
    assert data.source.kind == "imagefolder" and data.source.path == root
    assert data.source.label == "CIFAR-10 (ImageFolder export)"
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert split.images.is_contiguous() and split.labels.dtype == torch.int64
    # test split: sorted by class then file name, pixels exactly the PNG's
    assert data.test.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert np.array_equal(data.test.images[4].permute(1, 2, 0).numpy(), _pixels(1, 1, "test"))


def test_jpeg_export_gets_the_jpeg_label(tmp_path):
    assert D.resolve_source(make_imagefolder(tmp_path / "j", per_class=1, ext="jpg")).label == \
        "CIFAR-10 (JPEG export)"


def test_explicit_argument_beats_env_var_beats_defaults(tmp_path, monkeypatch):
    forbid_download(monkeypatch)
    make_imagefolder(Path("data"), per_class=1)
    env, arg = make_imagefolder(tmp_path / "env", 1), make_imagefolder(tmp_path / "arg", 1)
    monkeypatch.setenv("CIFAR_DEMO_DATA", str(env))
    assert D.resolve_source(arg).path == arg
    assert D.resolve_source().path == env
    monkeypatch.delenv("CIFAR_DEMO_DATA")
    assert D.resolve_source().path == Path("data").absolute()


def test_official_files_beat_imagefolder_and_load_exactly(tmp_path, monkeypatch):
    forbid_download(monkeypatch)
    make_imagefolder(Path("data"), per_class=1)  # first default location
    official = make_official(tmp_path / "cache" / "data")  # a later default location
    trust_fake_md5s(monkeypatch, official)
    src = D.resolve_source()
    assert (src.kind, src.path, src.label) == ("official", official, "CIFAR-10 (official)")
    data = D.load_cifar10(val_size=0)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 0, 20)
    # data_batch_2's first image is class 0, index 2; CIFAR rows are CHW planes
    assert np.array_equal(data.train.images[20].permute(1, 2, 0).numpy(), _pixels(0, 2, "train"))
    assert data.test.labels.tolist() == [c for c in range(10) for _ in range(2)]


def test_explicit_path_may_be_the_batches_folder_itself(tmp_path, monkeypatch):
    official = make_official(tmp_path / "o")
    trust_fake_md5s(monkeypatch, official)
    src = D.resolve_source(official / D.OFFICIAL_DIR)
    assert (src.kind, src.path) == ("official", official)


def test_unofficial_batches_fail_md5_with_a_clear_error(tmp_path):
    official = make_official(tmp_path / "o")
    with pytest.raises(D.DataSourceError) as e:
        D.load_split("test", official)
    msg = str(e.value)
    assert "md5" in msg and "data_batch_1" in msg and "test_batch" in msg and str(official) in msg


def test_official_layout_missing_a_file(tmp_path):
    official = make_official(tmp_path / "o")
    (official / D.OFFICIAL_DIR / "data_batch_3").unlink()
    with pytest.raises(D.DataSourceError, match="missing data_batch_3"):
        D.resolve_source(official)


def test_download_when_nothing_is_local(tmp_path, monkeypatch):
    template = make_official(tmp_path / "template")
    trust_fake_md5s(monkeypatch, template)

    class FakeDownload(torchvision.datasets.CIFAR10):
        def download(self):  # torchvision's download, minus the network
            if not self._check_integrity():
                shutil.copytree(template / D.OFFICIAL_DIR, Path(self.root) / D.OFFICIAL_DIR)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeDownload)
    src = D.resolve_source()
    assert (src.kind, src.path) == ("download", tmp_path / "cache" / "download")
    assert len(D.load_split("train")) == 100
    # next time the downloaded files are a default location like any other
    assert D.resolve_source().kind == "official"


def test_no_source_and_no_network_is_one_error_naming_every_option(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(D.DataSourceError) as e:
        D.load_cifar10()
    msg = str(e.value)
    for needle in ["--data DIR", "CIFAR_DEMO_DATA", "cifar-10-batches-py", "data_batch_1", "batches.meta",
                   "train/<class>", "test/<class>", "download=True", "URLError",
                   "Temporary failure in name resolution", str(tmp_path / "work" / "data"),
                   str(tmp_path / "cache" / "data"), str(tmp_path / "cache" / "download")]:
        assert needle in msg, needle


# --- folders of the wrong shape --------------------------------------------------------


def test_missing_split_names_the_folder(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    shutil.rmtree(root / "test")
    with pytest.raises(D.DataSourceError, match=f"Missing split: {root / 'test'}"):
        D.resolve_source(root)


def test_wrong_class_names_are_listed(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    (root / "train" / "cat").rename(root / "train" / "Cat")
    (root / "train" / "kitten").mkdir()
    with pytest.raises(D.DataSourceError) as e:
        D.resolve_source(root)
    assert "missing cat; unexpected Cat, kitten" in str(e.value) and str(root / "train") in str(e.value)


def test_non_image_file_is_named(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    (root / "test" / "dog" / "notes.txt").write_text("hello")
    (root / "test" / "dog" / ".DS_Store").write_text("hidden files are ignored")
    with pytest.raises(D.DataSourceError, match=f"Not an image: {root / 'test' / 'dog' / 'notes.txt'}"):
        D.resolve_source(root)


def test_unreadable_image_is_named(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    bad = root / "train" / "ship" / "0000.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(D.DataSourceError, match=f"Not a readable image: {bad}"):
        D.load_split("train", root)


def test_wrong_image_size_names_file_and_size(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    big = root / "test" / "frog" / "0000.png"
    Image.new("RGB", (40, 30)).save(big)
    with pytest.raises(D.DataSourceError, match=f"Wrong image size: {big} is 40x30"):
        D.load_cifar10(root, val_size=0)


def test_explicit_folder_of_neither_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DataSourceError, match="holds neither CIFAR-10 layout"):
        D.resolve_source(tmp_path / "empty")
    with pytest.raises(D.DataSourceError, match="does not exist"):
        D.resolve_source(tmp_path / "nowhere")


# --- decoding cache --------------------------------------------------------------------


def test_second_load_reads_the_cache_not_the_images(tmp_path, monkeypatch):
    root = make_imagefolder(tmp_path / "x", 2)
    first = D.load_arrays("train", root)
    cached = list((tmp_path / "cache" / "decoded").glob("*-train.npz"))
    assert len(cached) == 1
    with np.load(cached[0], allow_pickle=False) as z:
        assert np.array_equal(z["images"], first[0])

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(Image, "open", no_decoding)
    second = D.load_arrays("train", root)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_changed_source_is_decoded_again_and_cache_dir_argument_wins(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    before = D.resolve_source(root).fingerprint
    Image.fromarray(_pixels(9, 9, "x")).save(root / "test" / "cat" / "0000.png")
    os.utime(root / "test" / "cat" / "0000.png", ns=(1, 1))
    assert D.resolve_source(root).fingerprint != before
    images, _ = D.load_arrays("test", root, cache_dir=tmp_path / "elsewhere")
    assert np.array_equal(images[3].transpose(1, 2, 0), _pixels(9, 9, "x"))
    assert list((tmp_path / "elsewhere" / "decoded").glob("*-test.npz"))


def test_source_folder_is_never_written(tmp_path):
    root = make_imagefolder(tmp_path / "x", 1)
    before = _snapshot(root)
    D.load_cifar10(root, val_size=0)
    D.load_cifar10(root, val_size=0)
    assert _snapshot(root) == before


# --- validation split ------------------------------------------------------------------


def test_stratified_split_is_seeded_balanced_and_disjoint():
    labels = np.repeat(np.arange(10), 50)
    tr, va = D.stratified_split(labels, 100, seed=3)
    assert np.bincount(labels[va]).tolist() == [10] * 10
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 500
    assert np.array_equal(va, D.stratified_split(labels, 100, seed=3)[1])
    assert not np.array_equal(va, D.stratified_split(labels, 100, seed=4)[1])
    assert len(D.stratified_split(labels, 15)[1]) == 15  # not a multiple of 10: still exact
    assert len(D.stratified_split(labels, 0)[1]) == 0
    with pytest.raises(ValueError):
        D.stratified_split(labels, 500)


def test_val_split_is_held_out_of_train(tmp_path):
    data = D.load_cifar10(make_imagefolder(tmp_path / "x", 3), val_size=10, seed=1)
    assert data.val.labels.tolist() == list(range(10))
    train = {bytes(x.numpy()) for x in data.train.images}
    assert not any(bytes(x.numpy()) in train for x in data.val.images)
    assert torch.equal(D.load_cifar10(tmp_path / "x", val_size=10, seed=1).val.images, data.val.images)


# --- TensorLoader ----------------------------------------------------------------------


def _split(n: int = 50) -> D.Split:
    g = torch.Generator().manual_seed(0)
    return D.Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.arange(n) % 10)


def _batches(it) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in it]


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))


def test_tensor_loader_shapes_and_exact_normalisation():
    split = _split(50)
    loader = D.TensorLoader(split, 16, shuffle=False)
    batches = _batches(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [16, 16, 16, 2]
    x, y = batches[0]
    assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)
    assert torch.allclose(x, (split.images[:16].float() / 255 - mean) / std)
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
    assert torch.all(holed[hole] == 0)  # 0 after normalising = the mean colour
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
    with pytest.raises(ValueError, match="albumentations_loader"):
        D.TensorLoader(_split(), 8, augment="seed004")


# --- albumentations_loader -------------------------------------------------------------


@pytest.mark.parametrize("preset", ["seed004", "autoaugment"])
def test_per_image_loader_shapes_and_determinism(preset):
    split = _split(20)
    loader = D.albumentations_loader(split, preset, batch_size=8, num_workers=0, seed=3)
    batches = _batches(loader)
    assert len(loader) == 3 and [len(y) for _, y in batches] == [8, 8, 4]
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert sorted(torch.cat([y for _, y in batches]).tolist()) == sorted(split.labels.tolist())
    again = D.albumentations_loader(split, preset, batch_size=8, num_workers=0, seed=3)
    assert _same(_batches(again), batches)
    assert not _same(_batches(again), batches)  # epoch 1 differs from epoch 0
    # in a fixed order, each epoch and each seed still augments afresh
    ordered = D.albumentations_loader(split, preset, batch_size=8, num_workers=0, shuffle=False, seed=3)
    epoch0 = _batches(ordered)
    assert torch.equal(torch.cat([y for _, y in epoch0]), split.labels)
    assert not _same(_batches(ordered), epoch0)
    other = D.albumentations_loader(split, preset, batch_size=8, num_workers=0, shuffle=False, seed=4)
    assert not _same(_batches(other), epoch0)


def test_per_image_loader_resumes_mid_epoch_and_shards():
    split = _split(20)
    loader = D.PerImageLoader(split, "autoaugment", batch_size=4, num_workers=0, seed=2)
    whole = _batches(loader.iter_from(3))
    assert _same(_batches(loader.iter_from(3, start_batch=2)), whole[2:])
    assert _same(_batches(loader.iter_from(3)), whole)  # the skip applies once
    shards = [D.albumentations_loader(split, "seed004", 2, num_workers=0, rank=r, world_size=3)
              for r in range(3)]
    labels = [torch.cat([y for _, y in ld]) for ld in shards]
    assert [len(y) for y in labels] == [6, 6, 6] and len({len(ld) for ld in shards}) == 1
    idx = [set(ld.sampler) for ld in shards]
    assert not (idx[0] & idx[1]) and not (idx[1] & idx[2]) and not (idx[0] & idx[2])


def test_subsets_keep_classes_balanced():
    split = _split(50)
    sub = D.stratified_subset(split, 20, seed=1)
    assert torch.bincount(sub.labels).tolist() == [2] * 10
    assert D.stratified_subset(split, 50) is split
    assert torch.equal(D.subset(split, range(3, 6)).images, split.images[3:6])


def test_per_image_loader_does_not_depend_on_workers():
    split = _split(12)
    serial = D.albumentations_loader(split, "seed004", batch_size=4, num_workers=0, seed=1)
    workers = D.albumentations_loader(split, "seed004", batch_size=4, num_workers=2, seed=1)
    serial.set_epoch(2)
    workers.set_epoch(2)
    assert _same(_batches(serial), _batches(workers))


def test_per_image_loader_rejects_device_presets():
    with pytest.raises(ValueError, match="TensorLoader"):
        D.albumentations_loader(_split(), "standard", batch_size=4)


# --- bundled sample --------------------------------------------------------------------


def test_bundled_sample_has_five_images_per_class():
    sample = D.load_sample()
    assert sample.images.shape == (50, 3, 32, 32) and sample.images.dtype == torch.uint8
    assert sample.labels.tolist() == [c for c in range(10) for _ in range(5)]
    paths = D.sample_paths()
    assert len(paths) == 50 and all(p.is_file() and p.parent.name == cls for p, cls in paths)


def test_bundled_sample_equals_the_export_it_came_from(jpeg_export):
    for (path, cls), image in zip(D.sample_paths(), D.load_sample().images):
        jpg = jpeg_export / "test" / cls / f"{path.stem}.jpg"
        assert np.array_equal(D.read_image(jpg), image.numpy()), path


# --- the real JPEG export --------------------------------------------------------------


def test_real_jpeg_export_loads_in_full(jpeg_export):
    """Decodes all 60,000 JPEGs once (about 7-10 s on 2 cores), then checks counts and a file."""
    data = D.load_cifar10(jpeg_export)
    assert (len(data.train), len(data.val), len(data.test)) == (45_000, 5_000, 10_000)
    assert data.source.label == "CIFAR-10 (JPEG export)"
    assert torch.bincount(data.train.labels).tolist() == [4_500] * 10
    assert torch.bincount(data.val.labels).tolist() == [500] * 10
    assert torch.bincount(data.test.labels).tolist() == [1_000] * 10
    # test split is sorted by class then name: index 3,000 is test/cat/ first file
    first_cat = sorted((jpeg_export / "test" / "cat").iterdir())[0]
    assert data.test.labels[3_000].item() == CLASSES.index("cat")
    assert np.array_equal(data.test.images[3_000].numpy(), D.read_image(first_cat))


def test_alternating_flip_shows_each_image_on_both_sides_every_two_epochs():
    split = _split(64)
    plain = split.images.float() / 255
    loader = D.TensorLoader(split, 64, shuffle=False, flip="alternate", seed=3)
    mean, std = torch.tensor(CIFAR_MEAN).view(3, 1, 1), torch.tensor(CIFAR_STD).view(3, 1, 1)

    def flipped(epoch):
        (x, _), = _batches(loader.iter_from(epoch))
        x = x * std + mean
        same, mirrored = (x - plain).abs().flatten(1).amax(1) < 1e-5, (x - plain.flip(-1)).abs().flatten(1).amax(1) < 1e-5
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


def test_split_digest_follows_the_pixels_and_labels_only():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.arange(20) % 10
    split = D.Split(images, labels)
    same = D.Split(images.clone(), labels.clone())
    assert D.split_digest(split) == D.split_digest(same)
    pixel = images.clone()
    pixel[3, 1, 4, 5] ^= 1
    assert D.split_digest(D.Split(pixel, labels)) != D.split_digest(split)
    relabelled = labels.clone()
    relabelled[0] = 9
    assert D.split_digest(D.Split(images, relabelled)) != D.split_digest(split)
