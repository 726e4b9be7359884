"""Tests for datasets of your own images (cifar_demo.data own.py, own_scan.py, rules.py):
both layouts and zips, class names and counts, the held-out test split, the validation cap,
limits and caps, skipped files (also after a cache hit), and a source that is never written.

The datasets come from tests/own_images.py: blobs of one colour per class on noise, of random
sizes, saved as RGB JPEG, RGBA PNG and palette PNG."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_demo import data as D
from cifar_demo.common import CLASSES
from cifar_demo.data.pictures import load_image, to_32x32

from .own_images import NAMES, make_own_folder, zip_folder
from .synthetic_data import snapshot

# Each test gets its own cache and working directory (conftest.py's clean_env).
pytestmark = pytest.mark.usefixtures("clean_env")

THREE = NAMES[:3]                      # leaf, coin, shell: sorted, coin, leaf, shell
SORTED = tuple(sorted(THREE))


def as_upload(path) -> np.ndarray:
    """What Predict makes of the file: the pixels a loaded image must equal (3,32,32)."""
    return to_32x32(load_image(path)).transpose(2, 0, 1)


def pixel_set(split: D.Split) -> set[bytes]:
    return {bytes(x.numpy()) for x in split.images}


# --- layouts -----------------------------------------------------------------------------


def test_split_layout_loads_with_sorted_classes_counts_and_a_description(tmp_path):
    root = make_own_folder(tmp_path / "pets", THREE, per_class=12, test_per_class=4)
    data = D.load_dataset(root, val_size=5000)
    assert data.classes == SORTED == data.source.classes
    src = data.source
    assert (src.kind, src.path, src.name, src.layout, src.label) == \
        ("own", root, "pets", "split", "pets (own images)")
    # 36 training images; val capped at 10% of them (the CIFAR-sized default asked for 5,000)
    assert (len(data.train), len(data.val), len(data.test)) == (33, 3, 12)
    for split in (data.train, data.val, data.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (3, 32, 32)
        assert split.labels.dtype == torch.int64
    # test: by class, then file name; pixels exactly what Predict makes of the same file
    assert data.test.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert np.array_equal(data.test.images[4].numpy(), as_upload(root / "test" / "leaf" / "leaf_000.jpg"))
    assert np.array_equal(data.test.images[1].numpy(), as_upload(root / "test" / "coin" / "coin_001.png"))
    desc = data.description()
    assert json.loads(json.dumps(desc)) == desc
    assert desc == {"name": "pets", "label": "pets (own images)", "kind": "own", "layout": "split",
                    "classes": list(SORTED), "counts": {"train": 33, "val": 3, "test": 12},
                    "test_rule": "the test/ folder", "skipped": [], "fingerprint": src.fingerprint}
    # the single-split entry points serve own data too, from the same cache
    assert torch.equal(D.load_split("test", root).images, data.test.images)
    assert np.array_equal(D.decode(src, "test")[1], data.test.labels.numpy())


def test_single_folder_holds_out_a_seeded_stratified_disjoint_test_split(tmp_path):
    root = make_own_folder(tmp_path / "shells", THREE, per_class=12, layout="single")
    data = D.load_dataset(root, val_size=3, seed=1)
    assert data.source.layout == "single" and data.classes == SORTED
    # 20% of 12, rounded down: 2 per class held out; the rest is train + val
    assert torch.bincount(data.test.labels).tolist() == [2, 2, 2]
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 6)
    assert torch.bincount(data.val.labels).tolist() == [1, 1, 1]
    test, val, train = pixel_set(data.test), pixel_set(data.val), pixel_set(data.train)
    assert len(test | val | train) == 36 and not (test & val or test & train or val & train)
    assert data.description()["test_rule"] == D.TEST_RULE
    # another val seed: another val split, the same test split (runs stay comparable)
    other = D.load_dataset(root, val_size=3, seed=2)
    assert torch.equal(other.test.images, data.test.images)
    assert pixel_set(other.val) != val
    # the rule itself: at least one per class, 20% rounded down, the same every time
    labels = np.repeat(np.arange(4), [5, 7, 10, 23])
    tr, te = D.hold_out_test(labels)
    assert np.bincount(labels[te]).tolist() == [1, 1, 2, 4]
    assert len(np.intersect1d(tr, te)) == 0 and len(tr) + len(te) == len(labels)
    assert np.array_equal(te, D.hold_out_test(labels)[1])
    assert not np.array_equal(te[-4:], np.arange(22, 26))  # drawn at random, not the first files


def test_zips_plain_and_wrapped_give_the_folders_dataset(tmp_path):
    for layout in ("split", "single"):
        root = make_own_folder(tmp_path / layout / "beads", THREE, per_class=6, layout=layout)
        folder = D.load_dataset(root, val_size=0)
        for wrap in (False, True):
            z = zip_folder(root, tmp_path / layout / f"beads-{wrap}.zip", wrap=wrap)
            with zipfile.ZipFile(z, "a") as f:  # what macOS and Finder add: never read
                f.writestr("__MACOSX/leaf/._leaf_000.jpg", b"resource fork")
                f.writestr("__MACOSX/leaf/leaf_000.jpg", b"not a class folder either")
                f.writestr(("beads/" if wrap else "") + ".DS_Store", b"finder")
            data = D.load_dataset(z, val_size=0)
            assert (data.source.kind, data.source.path, data.source.name) == ("own", z, f"beads-{wrap}")
            assert (data.classes, data.source.layout, data.skipped) == (SORTED, layout, ())
            assert torch.equal(data.train.images, folder.train.images), (layout, wrap)
            assert torch.equal(data.test.labels, folder.test.labels), (layout, wrap)


def test_two_classes_are_enough(tmp_path):
    data = D.load_dataset(make_own_folder(tmp_path / "duo", NAMES[:2], per_class=5, layout="single"), val_size=0)
    assert data.classes == ("coin", "leaf") and (len(data.train), len(data.test)) == (8, 2)


def test_one_class_is_refused_with_a_clear_message(tmp_path):
    root = make_own_folder(tmp_path / "solo", ("leaf",), per_class=6, layout="single")
    with pytest.raises(D.DataSourceError) as e:
        D.load_dataset(root)
    msg = str(e.value)
    assert "1 class folder found (leaf)" in msg and "a dataset needs 2 to 100 classes" in msg
    assert f"give {root / 'leaf'} instead" in msg  # in case leaf is the folder around the dataset
    # a zip of one class folder is not taken for a wrapping folder
    with pytest.raises(D.DataSourceError, match=r"1 class folder found \(leaf\) in solo.zip"):
        D.load_dataset(zip_folder(root, tmp_path / "solo.zip"))


def test_too_many_classes_and_too_few_images_are_refused(tmp_path):
    root = make_own_folder(tmp_path / "many", NAMES, per_class=5, layout="single")
    with pytest.raises(D.DataSourceError, match=r"6 class folders found \(button, coin, leaf, pebble, shell, "
                                                r"stamp\) in .*needs 2 to 4 classes"):
        D.load_dataset(root, limits=D.DataLimits(max_classes=4))
    few = make_own_folder(tmp_path / "few", THREE, per_class=4, test_per_class=1)
    with pytest.raises(D.DataSourceError) as e:
        D.load_dataset(few)
    assert "each class needs at least 5 in train/<class>/" in str(e.value)
    assert "coin (4), leaf (4), shell (4) have fewer" in str(e.value)
    # enough files, but one does not decode: counted on the images that could be read
    short = make_own_folder(tmp_path / "short", THREE, per_class=5, broken=1, layout="single")
    (short / "leaf" / "leaf_000.jpg").unlink()  # 4 good leaves and a broken one: 5 files
    with pytest.raises(D.DataSourceError, match=r"that could be read \(1 file skipped\).*leaf \(4\) has fewer"):
        D.load_dataset(short)


def test_train_and_test_must_hold_the_same_classes_and_both_exist(tmp_path):
    root = make_own_folder(tmp_path / "odd", THREE, per_class=5, test_per_class=1)
    (root / "test" / "shell").rename(root / "test" / "shells")
    with pytest.raises(D.DataSourceError, match="only in train/: shell; only in test/: shells"):
        D.load_dataset(root)
    (root / "test" / "shells").rename(root / "test" / "shell")
    (root / "test" / "leaf" / "leaf_000.jpg").unlink()
    with pytest.raises(D.DataSourceError, match="No test image files for leaf"):
        D.load_dataset(root)
    for p in (root / "test").rglob("*"):
        if p.is_file():
            p.unlink()
    for p in sorted((root / "test").rglob("*"), reverse=True):
        p.rmdir()
    (root / "test").rmdir()
    with pytest.raises(D.DataSourceError, match="Missing split: .* has train/ but no test/ folder"):
        D.load_dataset(root)


# --- caps ----------------------------------------------------------------------------------


def test_file_and_byte_caps_are_refused_with_clear_messages(tmp_path):
    root = make_own_folder(tmp_path / "big", THREE, per_class=6, layout="single")
    with pytest.raises(D.DataSourceError, match=r"holds more than 10 files; the limit is 10 files \(in tests\)"):
        D.load_dataset(root, limits=D.DataLimits(max_files=10, note="in tests"))
    with pytest.raises(D.DataSourceError, match=r"add up to [\d.]+ MB; the limit is 0\.0 MB"):
        D.load_dataset(root, limits=D.DataLimits(max_bytes=1000))
    z = zip_folder(root, tmp_path / "big.zip")
    with pytest.raises(D.DataSourceError, match="holds more than 10 files"):
        D.load_dataset(z, limits=D.DataLimits(max_files=10))
    with pytest.raises(D.DataSourceError, match=r"big.zip is [\d.]+ MB; the limit is 0\.0 MB"):
        D.load_dataset(z, limits=D.DataLimits(max_bytes=1000))
    assert D.load_dataset(root, val_size=0, limits=D.PUBLIC_LIMITS).classes == SORTED  # small is fine


def test_a_zip_bomb_is_refused_from_its_declared_sizes_before_decompressing(tmp_path, monkeypatch):
    z = tmp_path / "bomb.zip"
    zeros = bytes(4 * 2**20)  # compresses ~1000:1
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        for cls in ("a", "b"):
            for i in range(5):
                f.writestr(f"{cls}/{i}.png", zeros)
    assert z.stat().st_size < 2**20 / 4
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: pytest.fail("decompressed a member"))
    with pytest.raises(D.DataSourceError, match=r"add up to 40\.0 MB; the limit is 5\.0 MB"):
        D.load_dataset(z, limits=D.DataLimits(max_bytes=5 * 2**20))


def _flat_png(width: int, height: int) -> bytes:
    """A one-colour PNG: a few KB however many pixels it declares (a pixel bomb)."""
    import io

    buf = io.BytesIO()
    Image.new("1", (width, height)).save(buf, "PNG")
    return buf.getvalue()


def _decodes(monkeypatch) -> list:
    """Every source own.py hands to load_image (to see that a bomb never gets there)."""
    from cifar_demo.data import own

    seen, real = [], own.load_image
    monkeypatch.setattr(own, "load_image", lambda source, **kw: (seen.append(source), real(source, **kw))[1])
    return seen


def test_a_pixel_bomb_in_a_zip_is_skipped_from_its_header_before_decoding(tmp_path, monkeypatch):
    root = make_own_folder(tmp_path / "pets", THREE, per_class=6, test_per_class=2)
    z = zip_folder(root, tmp_path / "pets.zip")
    bomb = _flat_png(5000, 5000)                     # 25 MP, over the 16.8 MP cap per image
    assert len(bomb) < 20_000
    with zipfile.ZipFile(z, "a", zipfile.ZIP_DEFLATED) as f:
        for i in range(3):
            f.writestr(f"train/leaf/bomb_{i}.png", bomb)
    decoded = _decodes(monkeypatch)
    ds = D.load_dataset(z, val_size=0, limits=D.PUBLIC_LIMITS)
    skipped = dict(ds.description()["skipped"])
    for i in range(3):
        assert skipped[f"train/leaf/bomb_{i}.png"].startswith(
            "is 5000x5000 pixels; the limit per image is 16.8 megapixels")
    assert len(decoded) == 3 * 6 + 3 * 2 and len(ds.train) == 18   # the others only, each once


def test_a_zip_whose_images_declare_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    z = tmp_path / "flat.zip"
    flat = _flat_png(4000, 4000)                     # 16 MP each, under the per-image cap
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as f:
        for cls in ("a", "b"):
            for i in range(40):
                f.writestr(f"{cls}/{i}.png", flat)
    assert z.stat().st_size < 2**20                  # 1.3 GP in under 1 MB
    decoded = _decodes(monkeypatch)
    with pytest.raises(D.DataSourceError, match=r"add up to 1,280 megapixels; the limit is 1,000 megapixels "
                                                r"\(in public mode"):
        D.load_dataset(z, limits=D.PUBLIC_LIMITS)
    assert decoded == []


# --- skipped files ---------------------------------------------------------------------------


def test_unreadable_and_odd_files_are_skipped_and_listed_also_after_a_cache_hit(tmp_path, monkeypatch):
    root = make_own_folder(tmp_path / "mixed", THREE, per_class=6, test_per_class=2, broken=2)
    (root / "train" / "coin" / "notes.txt").write_text("where I found them")
    (root / "train" / "coin" / ".DS_Store").write_bytes(b"hidden: ignored")
    (root / "train" / "coin" / "empty.png").write_bytes(b"")
    (root / "train" / "stray.jpg").write_bytes((root / "train" / "coin" / "coin_000.jpg").read_bytes())
    (root / "val" / "coin").mkdir(parents=True)
    (root / "README.md").write_text("beside train/ and test/: ignored")
    # awkward but readable modes decode like uploads: 16-bit grey, CMYK JPEG, in a sub-folder
    (root / "train" / "shell" / "more").mkdir()
    Image.fromarray((np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30)).save(
        root / "train" / "shell" / "more" / "grey16.png")
    Image.new("CMYK", (60, 45), (10, 200, 30, 5)).save(root / "train" / "shell" / "more" / "cmyk.jpg")
    data = D.load_dataset(root, val_size=0)
    reasons = dict(data.skipped)
    assert sorted(reasons) == ["train/coin/empty.png", "train/coin/notes.txt", "train/leaf/zz_broken_0.jpg",
                               "train/leaf/zz_broken_1.jpg", "train/stray.jpg", "val/"]
    assert reasons["train/leaf/zz_broken_0.jpg"].startswith("could not be decoded")
    assert reasons["train/coin/notes.txt"].startswith("is not a supported image file (.txt")
    assert reasons["train/coin/empty.png"] == "is empty (0 bytes)"
    assert reasons["train/stray.jpg"] == "is not inside a class folder"
    assert torch.bincount(data.train.labels).tolist() == [6, 6, 8]  # broken ones out, sub-folder in
    shell = data.train.images[data.train.labels == 2]
    assert any(np.array_equal(x.numpy(), as_upload(root / "train/shell/more/cmyk.jpg")) for x in shell)
    assert any(np.array_equal(x.numpy(), as_upload(root / "train/shell/more/grey16.png")) for x in shell)
    assert data.description()["skipped"] == [list(s) for s in data.skipped]

    monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded although cached"))
    again = D.load_dataset(root, val_size=0)
    assert again.skipped == data.skipped and torch.equal(again.train.images, data.train.images)


def test_a_zip_member_with_a_bad_crc_is_skipped_not_fatal(tmp_path):
    root = make_own_folder(tmp_path / "crc", THREE, per_class=5, layout="single")
    z = tmp_path / "crc.zip"
    target = (root / "leaf" / "leaf_001.png").read_bytes()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as f:  # stored: the bytes sit in the file as is
        for p in sorted(root.rglob("*.*")):
            f.write(p, p.relative_to(root).as_posix())
    raw = bytearray(z.read_bytes())
    at = raw.index(target) + len(target) // 2
    raw[at] ^= 0xFF
    z.write_bytes(bytes(raw))
    with pytest.raises(D.DataSourceError, match=r"leaf \(4\) has fewer"):
        D.load_dataset(z)
    data = D.load_dataset(z, limits=D.DataLimits(min_per_class=4))
    (rel, why), = data.skipped
    assert rel == "leaf/leaf_001.png" and "could not be decoded" in why


# --- the source is only read; CIFAR-10 stays CIFAR-10 -----------------------------------------


def test_nothing_is_written_into_the_source_folder_or_zip(tmp_path):
    root = make_own_folder(tmp_path / "ro", THREE, per_class=5, layout="single", broken=1)
    z = zip_folder(root, tmp_path / "ro.zip", wrap=True)
    before, zip_before = snapshot(root), (z.stat().st_mtime_ns, z.read_bytes())
    for source in (root, z, root, z):  # decode, then cache hits
        D.load_dataset(source, val_size=0)
    assert snapshot(root) == before and (z.stat().st_mtime_ns, z.read_bytes()) == zip_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ro", "ro.zip", "work"]
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npz"))) == 4  # 2 sources x train, test


def test_a_symlink_loop_in_a_folder_ends(tmp_path):
    root = make_own_folder(tmp_path / "loop", THREE, per_class=5, layout="single")
    os.symlink(root, root / "leaf" / "again")
    assert len(D.load_dataset(root, val_size=0).train) == 12


def test_cifar_class_names_in_a_train_test_folder_keep_the_export_rules(tmp_path):
    """A folder whose train/ or test/ holds exactly the ten CIFAR-10 class folders is the CIFAR-10
    export (32x32 only, an error otherwise); the same pictures as DIR/<class>/* are own images."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in CLASSES:
            (tmp_path / "ten" / split / cls).mkdir(parents=True)
            for i in range(5):
                Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(
                    tmp_path / "ten" / split / cls / f"{i}.png")
    assert D.resolve_source(tmp_path / "ten").kind == "imagefolder"
    with pytest.raises(D.DataSourceError, match="Wrong image size: .* is 40x30.*give them as DIR/<class>/"):
        D.load_dataset(tmp_path / "ten")
    data = D.load_dataset(tmp_path / "ten" / "train", val_size=0)
    assert (data.source.kind, data.classes, data.source.name) == ("own", CLASSES, "train")
    assert (len(data.train), len(data.test)) == (40, 10)


def test_sources_that_are_neither_say_so(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(D.DataSourceError, match="is not a folder or a .zip file"):
        D.load_dataset(tmp_path / "notes.txt")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(D.DataSourceError, match="broken.zip is not a readable zip file"):
        D.load_dataset(tmp_path / "broken.zip")
    (tmp_path / "flat").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "flat" / "a.png")
    with pytest.raises(D.DataSourceError, match="nor class folders of your own images"):
        D.load_dataset(tmp_path / "flat")


def test_changed_files_are_decoded_again(tmp_path):
    root = make_own_folder(tmp_path / "edit", THREE, per_class=5, layout="single")
    first = D.load_dataset(root, val_size=0)
    Image.new("RGB", (50, 50), (255, 255, 255)).save(root / "coin" / "zz_white.png")
    second = D.load_dataset(root, val_size=0)
    assert second.source.fingerprint != first.source.fingerprint
    assert len(second.train) + len(second.test) == 16
    assert any(bool((x == 255).all()) for x in torch.cat([second.train.images, second.test.images]))


# --- rules -------------------------------------------------------------------------------------


def test_val_size_is_honoured_up_to_its_cap(tmp_path):
    root = make_own_folder(tmp_path / "v", THREE, per_class=20, test_per_class=2)
    assert [len(D.load_dataset(root, val_size=n).val) for n in (0, 2, 6, 7, 5000)] == [0, 2, 6, 6, 6]
    assert torch.bincount(D.load_dataset(root, val_size=5000).val.labels).tolist() == [2, 2, 2]
    assert D.capped_val_size(5000, 300) == 30 and D.capped_val_size(10, 300) == 10


def test_public_mode_gets_the_small_caps_by_the_job_queues_rule(monkeypatch):
    from cifar_demo.jobs import public_mode

    for space, flag in [(None, None), ("me/app", None), (None, "1"), ("me/app", "0"), (None, "yes")]:
        for name, value in (("SPACE_ID", space), ("CIFAR_DEMO_PUBLIC", flag)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        assert D.default_limits() is (D.PUBLIC_LIMITS if public_mode() else D.DEFAULT_LIMITS), (space, flag)
    assert D.PUBLIC_LIMITS.max_files < D.DEFAULT_LIMITS.max_files
    assert D.PUBLIC_LIMITS.max_bytes < D.DEFAULT_LIMITS.max_bytes


def test_cifar_sources_describe_themselves_too():
    split = D.Split(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.arange(4))
    src = D.DataSource("imagefolder", "x", "f" * 32, "CIFAR-10 (JPEG export)")  # positional, as before
    desc = D.CifarData(split, split, split, CLASSES, src).description()
    assert (desc["name"], desc["classes"], desc["skipped"], desc["test_rule"]) == \
        ("CIFAR-10", list(CLASSES), [], "the export's test/ folder")
    assert json.loads(json.dumps(desc)) == desc


def test_the_image_extensions_are_torchvisions():
    """own_scan writes torchvision's ImageFolder list out (reading data then needs no torchvision)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    from cifar_demo.data import own_scan

    assert set(own_scan.IMG_EXTENSIONS) == set(IMG_EXTENSIONS)
    assert set(own_scan.IMAGE_EXTENSIONS) == set(IMG_EXTENSIONS) | {".gif"}
