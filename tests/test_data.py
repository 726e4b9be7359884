"""Tests for cifar_demo.data: sources and their order, folders of the wrong shape, the
validation split, the bundled sample, the real JPEG export (tests/synthetic_data.py makes
the synthetic sources; the decode cache: test_data_cache.py; loaders: test_loaders.py)."""

from __future__ import annotations

import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cifar_demo import data as D
from cifar_demo.common import CLASSES

from .synthetic_data import forbid_download, make_imagefolder, make_official, pixels, trust_fake_md5s

# Each test gets its own cache and working directory (conftest.py's clean_env).
pytestmark = pytest.mark.usefixtures("clean_env")

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
    assert np.array_equal(data.test.images[4].permute(1, 2, 0).numpy(), pixels(1, 1, "test"))


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
    assert np.array_equal(data.train.images[20].permute(1, 2, 0).numpy(), pixels(0, 2, "train"))
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
                   "train/<class>", "test/<class>", "internet",
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


def test_subsets_keep_classes_balanced():
    g = torch.Generator().manual_seed(0)
    split = D.Split(torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(50) % 10)
    sub = D.stratified_subset(split, 20, seed=1)
    assert torch.bincount(sub.labels).tolist() == [2] * 10
    assert D.stratified_subset(split, 50) is split
    assert torch.equal(D.subset(split, range(3, 6)).images, split.images[3:6])


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

def test_split_digest_is_the_one_cards_recorded():
    """Cards store split_digest(test); a changed recipe would orphan every shipped card."""
    images = (torch.arange(20 * 3 * 32 * 32) % 251).to(torch.uint8).view(20, 3, 32, 32)
    assert D.split_digest(D.Split(images, torch.arange(20) % 10)) == "be4daa9a63863ec4d119280b824449b1"


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


@pytest.mark.slow   # decodes all 60,000 JPEGs on a cold cache
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
