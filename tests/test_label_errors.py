"""The CIFAR-10 test set's reviewed label errors: the shipped data, the mapping, the rescoring."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cifar_demo import data
from cifar_demo.analysis import label_check
from cifar_demo.common import CLASSES
from cifar_demo.data import DataSource
from cifar_demo.data import label_errors as LE


def _flag(index: int) -> LE.Flag:
    return next(f for f in LE.flags() if f.official_index == index)


def test_shipped_files_hold_the_papers_counts_and_attribution():
    assert len(LE.flags()) == 275
    assert len(LE.errors()) == 54                                  # fewer than 3 of 5 kept the label
    assert sum(f.majority is not None for f in LE.errors()) == 18  # 3+ of 5 chose the proposed one
    assert all(sum(dict(f.votes).values()) == 5 for f in LE.flags())
    labels = LE.official_labels()
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10
    assert all(labels[f.official_index] == f.given for f in LE.flags())
    notice = (LE.ASSET_DIR / "NOTICE.md").read_text()
    assert "Apache License 2.0" in notice and "cleanlab/label-errors" in notice
    assert "Apache License" in (LE.ASSET_DIR / "LICENSE").read_text()


def test_mapping_reproduces_the_pictures_checked_by_eye():
    # Looked at with an image viewer: a frog labelled cat, a ship labelled airplane, a dog labelled cat.
    assert LE.export_path(2405) == "test/cat/0235.jpg"
    assert LE.export_path(6877) == "test/airplane/0692.jpg"
    assert LE.export_path(1227) == "test/cat/0129.jpg"
    assert LE.export_path(0) == "test/cat/0000.jpg"                # the first test image is a cat
    with pytest.raises(ValueError):
        LE.export_path(10000)


def test_sentences_say_who_said_what():
    assert _flag(2405).describe() == "5 of 5 reviewers say this is a frog, not a cat"
    assert _flag(1227).describe() == "4 of 5 reviewers say this is a dog, not a cat (1 kept cat)"
    split = next(f for f in LE.errors() if f.majority is None and dict(f.votes)["neither"])
    assert split.describe().startswith(f"only {split.vote('given')} of 5 reviewers")
    assert "neither" in split.describe()
    assert _flag(6877).describe() == "5 of 5 reviewers say this is a ship, not an airplane"
    assert _flag(2405).short() == "label? 5/5: frog"


def test_official_order_maps_to_itself_and_own_images_do_not_apply(tmp_path):
    official = DataSource("official", tmp_path, "fp", "CIFAR-10 (official)")
    flagged = LE.index_map(official)
    assert len(flagged) == 54 and flagged[2405].proposed == CLASSES.index("frog")
    own = DataSource("own", tmp_path, "fp2", "leaves (own images)", classes=("a", "b"), name="leaves")
    assert LE.index_map(own) == {} and "not CIFAR-10's test set" in LE.not_applicable(own)
    renamed = DataSource("imagefolder", tmp_path, "fp3", "CIFAR-10 (ImageFolder export)")
    assert LE.index_map(renamed) == {} and "numbered" in LE.not_applicable(renamed)


def test_mapping_on_the_jpeg_export_finds_the_reviewed_pictures(jpeg_export):
    source = data.resolve_source(jpeg_export, download=False)
    flagged = LE.index_map(source)
    assert len(flagged) == 54
    by_official = {f.official_index: i for i, f in flagged.items()}
    assert by_official[2405] == 3 * 1000 + 235 and by_official[6877] == 692
    for i, f in list(flagged.items())[:5]:   # the index is the picture's own file
        assert i // 1000 == f.given
        assert (jpeg_export / "test" / CLASSES[f.given] / f"{i % 1000:04d}.jpg").samefile(jpeg_export / f.export_path)


def test_a_slice_of_the_export_keeps_its_reviewed_pictures(tmp_path):
    # The app's test server reads the first 20 pictures per class: test/deer/0012.jpg is a label error.
    for cls in CLASSES:
        (tmp_path / "test" / cls).mkdir(parents=True)
        for k in range(20):
            (tmp_path / "test" / cls / f"{k:04d}.jpg").touch()
    flagged = LE.index_map(DataSource("imagefolder", tmp_path, "slice", "CIFAR-10 (JPEG export)"))
    assert [(i, f.export_path) for i, f in flagged.items()] == [(4 * 20 + 12, "test/deer/0012.jpg")]
    (tmp_path / "test" / "cat" / "my_cat.jpg").touch()     # not the export's names: no guessing
    assert LE.index_map(DataSource("imagefolder", tmp_path, "other", "CIFAR-10 (JPEG export)")) == {}


def test_rescore_counts_the_labels_mistakes():
    cat, dog, frog = (CLASSES.index(c) for c in ("cat", "dog", "frog"))
    majority = LE.Flag(3, cat, frog, (("both", 0), ("given", 0), ("guessed", 5), ("neither", 0)))
    split = LE.Flag(5, cat, dog, (("both", 0), ("given", 2), ("guessed", 2), ("neither", 1)))
    labels = np.array([0, 1, 2, cat, 4, cat, 6, 7])
    flagged = {3: majority, 5: split}
    right = labels.copy()
    r = label_check.rescore(labels, right, flagged)
    assert r.accuracy == 1.0 and r.accuracy_majority == 7 / 8 and r.new_mistakes == [3] and r.relabelled == 1
    says = right.copy()
    says[3], says[5] = frog, dog
    r = label_check.rescore(labels, says, flagged)
    assert r.accuracy == 6 / 8 and r.accuracy_majority == 7 / 8
    assert r.label_mistakes == [3] and r.disputed == [5] and r.flagged_wrong == [3, 5]
    assert "1 of its mistakes are really the label's" in r.sentence()
    rows = label_check.mislabelled_rows(flagged, labels, {"m": [frog, dog]})
    assert rows[0][:2] == [3, "cat"] and rows[0][-1] == "frog ✓" and rows[1][-1] == "dog ?"


def test_cli_lists_the_pictures_and_refuses_other_data(jpeg_export, capsys, tmp_path):
    from cifar_demo.cli import main

    assert main(["label-errors", "--list", "--data", str(jpeg_export)]) == 0
    out = capsys.readouterr().out
    assert "# 3235  test/cat/0235.jpg" in out and "5 of 5 reviewers say this is a frog, not a cat" in out
    assert out.count("test/") == 54 and "Apache-2.0" in out
    for cls in ("ants", "bees"):   # own images: the reviewed labels do not apply
        (tmp_path / cls).mkdir()
        for k in range(5):
            Image.new("RGB", (40, 40), (k * 40, 0, 0)).save(tmp_path / cls / f"{k}.png")
    assert main(["label-errors", "--data", str(tmp_path)]) == 2
    assert "not CIFAR-10's test set" in capsys.readouterr().err
