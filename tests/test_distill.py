"""Distillation (train/distill.py): the targets file, its refusals, the loaders' teacher
probabilities, the engine's blended targets, the teacher checks and the card's record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cifar_demo import data as data_mod
from cifar_demo import weights, zoo
from cifar_demo.common import CLASSES
from cifar_demo.data import CifarData, DataSource, Split
from cifar_demo.reporting import export
from cifar_demo.train import Trainer, distill, validate

from .helpers import cfg, run, write_imagefolder


def shifted(labels: torch.Tensor) -> torch.Tensor:
    """A 'teacher' that is sure each image is the next class: wrong on purpose, so a test can
    tell what a model learnt from it from what it learnt from the labels."""
    return torch.nn.functional.one_hot((labels + 1) % 10, 10).float()


def targets_for(split: Split, probs: torch.Tensor | None = None) -> distill.Targets:
    probs = shifted(split.labels) if probs is None else probs
    return distill.Targets(probs, {"format": distill.FORMAT, "teachers": [{"name": "made-up"}],
                                   "train_digest": data_mod.split_digest(split), "n": len(split)})


def test_blend_is_a_distribution_between_labels_and_teacher():
    labels = torch.tensor([0, 3, 9])
    teacher = torch.softmax(torch.randn(3, 10), 1)
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    assert torch.equal(distill.blend(labels, teacher, 0.0), one_hot)
    assert torch.allclose(distill.blend(labels, teacher, 1.0), teacher)
    mixed = distill.blend(labels, teacher, 0.3)
    assert torch.allclose(mixed, 0.7 * one_hot + 0.3 * teacher) and torch.allclose(mixed.sum(1), torch.ones(3))


def test_targets_file_round_trips_and_refuses_other_images_and_damage(tmp_path, tiny_data):
    path = distill.save(targets_for(tiny_data.train), tmp_path / "t.safetensors")
    loaded = distill.load(path, tiny_data.train)
    assert torch.equal(loaded.probs, shifted(tiny_data.train.labels)) and loaded.meta["n"] == len(tiny_data.train)
    # made for other images: another split, or the same split with one pixel changed
    with pytest.raises(distill.DistillError, match="other training images"):
        distill.load(path, tiny_data.val)
    changed = Split(tiny_data.train.images.clone(), tiny_data.train.labels)
    changed.images[0, 0, 0, 0] ^= 1
    with pytest.raises(distill.DistillError, match="other training images"):
        distill.load(path, changed)
    # missing, damaged, or some other safetensors file
    with pytest.raises(distill.DistillError, match="no distillation targets"):
        distill.read_meta(tmp_path / "absent.safetensors")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(distill.DistillError):
        distill.load(broken, tiny_data.train)
    from safetensors.torch import save_file
    save_file({"probs": shifted(tiny_data.train.labels)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(distill.DistillError, match="not a distillation targets file"):
        distill.load(tmp_path / "other.safetensors", tiny_data.train)
    # not one distribution per image
    bad = distill.save(targets_for(tiny_data.train, 2 * shifted(tiny_data.train.labels)), tmp_path / "bad.safetensors")
    with pytest.raises(distill.DistillError, match="not one distribution"):
        distill.load(bad, tiny_data.train)


@pytest.mark.parametrize("preset", ["standard", "autoaugment"])   # TensorLoader, PerImageLoader
def test_loaders_yield_each_image_s_teacher_probabilities(preset, tiny_data):
    train = Split(tiny_data.train.images, tiny_data.train.labels, shifted(tiny_data.train.labels))
    if preset == "standard":
        loader = data_mod.TensorLoader(train, 64, augment=preset, seed=3)
    else:
        loader = data_mod.PerImageLoader(train, preset, 64, num_workers=0, seed=3)
    sub = data_mod.subset(train, [5, 1, 300])   # subsets keep them aligned too
    assert torch.equal(sub.soft, shifted(sub.labels))
    seen = 0
    for x, y, soft in loader.iter_from(1):
        assert soft.shape == (len(y), 10) and torch.equal(soft.argmax(1), (y + 1) % 10)
        seen += len(y)
    assert seen == len(train)
    plain = data_mod.TensorLoader(tiny_data.train, 64, augment="standard")
    assert all(len(batch) == 2 for batch in plain)   # no teacher: (images, labels) as before


@pytest.mark.slow   # trains two small runs
def test_a_distilled_run_learns_what_the_teacher_says(tmp_path, tiny_data):
    path = distill.save(targets_for(tiny_data.train), tmp_path / "t.safetensors")
    # All weight on a teacher that names the next class: the model learns the teacher, not the labels.
    # quiz_dnn learns the synthetic classes in 5 epochs (optimized200k, MODEL, does not).
    taught, run_dir = run(cfg(model="quiz_dnn", epochs=5, distill=str(path), distill_weight=1.0), tmp_path / "a",
                          tiny_data)
    plain, _ = run(cfg(model="quiz_dnn", epochs=5), tmp_path / "b", tiny_data)
    assert plain["test_acc"] > 0.5 and taught["test_acc"] < 0.2
    # The last weights (the "best" are chosen on the true labels) say the teacher's class.
    model = zoo.create("quiz_dnn")
    model.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
    x, y = next(data_mod.TensorLoader(tiny_data.test, 100, shuffle=False).iter_from(0))
    with torch.no_grad():
        said = model.eval()(x).argmax(1)
    assert (said == (y + 1) % 10).float().mean() > 0.5


def test_config_rules_for_distill(tmp_path, tiny_data):
    with pytest.raises(ValueError, match="distill_weight must be in"):
        validate(cfg(distill_weight=1.5))
    with pytest.raises(ValueError, match="either distill or batch mixes"):
        validate(cfg(distill="t.safetensors", mixes={"mixup": 0.5}))
    with pytest.raises(ValueError, match="no distillation targets"):
        validate(cfg(distill=str(tmp_path / "absent.safetensors")))
    # a file made for other images is refused when the run loads its data, before any step
    path = distill.save(targets_for(tiny_data.val), tmp_path / "val.safetensors")
    with pytest.raises(distill.DistillError, match="other training images"):
        run(cfg(distill=str(path)), tmp_path, tiny_data)


def fake_cifar(val_size: int, label: str = "CIFAR-10 (JPEG export)") -> CifarData:
    def empty(n):
        return Split(torch.zeros(n, 3, 32, 32, dtype=torch.uint8), torch.zeros(n, dtype=torch.long))
    source = DataSource(kind="imagefolder", path="x", fingerprint="x", label=label)
    return CifarData(train=empty(10), val=empty(val_size), test=empty(10), classes=CLASSES, source=source)


def test_a_teacher_must_have_held_out_the_student_s_validation_images():
    card = weights.card_for("airnet")
    val_size, seed = card.train_config["val_size"], card.train_config["seed"]
    distill.check_teacher("airnet", fake_cifar(val_size), seed)   # the same split: fine
    with pytest.raises(distill.DistillError, match="student's validation images"):
        distill.check_teacher("airnet", fake_cifar(val_size), seed + 1)
    with pytest.raises(distill.DistillError, match="student's validation images"):
        distill.check_teacher("airnet", fake_cifar(val_size // 2), seed)
    with pytest.raises(distill.DistillError, match="was trained on"):
        distill.check_teacher("airnet", fake_cifar(val_size, "CIFAR-10 (official)"), seed)
    with pytest.raises(distill.DistillError, match="at least one"):
        distill.make_targets([], fake_cifar(val_size), seed)


def test_a_distilled_run_s_card_names_its_teachers(tmp_path, monkeypatch):
    folder = write_imagefolder(tmp_path / "data", n_train=10, n_test=2)
    ds = data_mod.load_dataset(str(folder), val_size=20, seed=0)
    path = distill.save(targets_for(ds.train), tmp_path / "t.safetensors")
    trainer = Trainer(cfg(model="optimized200k", data=str(folder), val_size=20, distill=str(path)),
                      runs_dir=tmp_path / "runs")
    trainer.run()
    _, card_path, card = export.export_run(trainer.run_dir.name, runs_dir=tmp_path / "runs", out_dir=tmp_path / "out")
    assert card.extra["distillation"]["teachers"] == [{"name": "made-up"}]
    assert json.loads(card_path.read_text())["train_config"]["distill"] == str(path)
    assert np.isclose(card.train_config["distill_weight"], 0.5)
