"""Your own classes: the engine, cards, predict, evaluate, export and the CLI with class names
that are not CIFAR-10's, from scratch and fine-tuned from the shipped airnet with a new head.

The in-process tests use a hand-built 3-class CifarData (tests/own_images.py's pictures decoded
as uploads are); the CLI tests (slow: subprocesses) train on folders and zips of those pictures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from cifar_demo import train as engine
from cifar_demo import weights, zoo
from cifar_demo.analysis import evaluate, predict
from cifar_demo.common import CLASSES
from cifar_demo.data import CifarData, DataSource, Split, pictures
from cifar_demo.reporting import export
from cifar_demo.train import TrainConfig, make_config, validate

from .own_images import NAMES, make_own_folder, picture, zip_folder

REPO = Path(__file__).resolve().parents[1]
THREE = NAMES[:3]                                   # leaf, coin, shell
FOLDERS = tuple(sorted(THREE))                      # as class folders: sorted, coin, leaf, shell
SHIPPED_AIRNET = weights.weights_dir() / "airnet.safetensors"
needs_airnet = pytest.mark.skipif(not SHIPPED_AIRNET.is_file(), reason="weights/airnet.safetensors not shipped")


def _split(classes, per_class: int, offset: int) -> Split:
    images = [pictures.to_32x32(picture(c, offset + i)) for c in range(len(classes)) for i in range(per_class)]
    labels = [c for c in range(len(classes)) for _ in range(per_class)]
    return Split(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), torch.tensor(labels))


def own_data(classes=THREE, train=16, val=4, test=4) -> CifarData:
    """A dataset of own images as the data layer hands it out, built by hand in memory."""
    source = DataSource(kind="own", path=Path("mine"), fingerprint="own-test", label="mine (own images)",
                        classes=tuple(classes), name="mine", layout="split")
    return CifarData(train=_split(classes, train, 0), val=_split(classes, val, 1000), test=_split(classes, test, 2000),
                     classes=tuple(classes), source=source)


def quick(**kw) -> TrainConfig:
    base = dict(model="simple_cnn", epochs=1, batch_size=8, lr=0.02, optimizer="sgd", schedule="constant",
                augment="none", precision="fp32", device="cpu", seed=0)
    return validate(TrainConfig(**{**base, **kw}))


def finetune(**kw) -> TrainConfig:
    return make_config("finetune", epochs=1, batch_size=8, precision="fp32", device="cpu", **kw)


# ------------------------------------------------------------------------ engine


def test_a_run_on_three_new_classes_records_them_and_predicts_with_them(tmp_path):
    data = own_data()
    summary = engine.Trainer(quick(), runs_dir=tmp_path, data=data).run()
    assert summary["classes"] == list(THREE) and summary["dataset"] == "mine (own images)"
    assert summary["dataset_description"]["counts"] == {"train": 48, "val": 12, "test": 12}
    run = engine.Run.find(summary["run_id"], tmp_path)
    assert run.classes() == THREE
    run.summary_path.unlink()                       # before the summary: the start event says so
    assert run.classes() == THREE and run.dataset_description()["name"] == "mine"
    model = weights.load(weights.ModelRef.run(run.dir)).model.eval()
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    with safe_open(str(run.best_path), "pt") as f:                # the best file says so too
        assert json.loads(f.metadata()["classes"]) == list(THREE)
    probs, _ = predict.predict_one(model, data.test.images[0].permute(1, 2, 0).numpy(), classes=run.classes())
    assert list(probs) == list(THREE) and sum(probs.values()) == pytest.approx(1)


def test_an_old_run_directory_without_classes_means_cifar10(tmp_path):
    run = engine.Run.create(tmp_path / "old", quick())
    run.write_summary({"run_id": "old", "status": "finished"})
    assert run.classes() == CLASSES and run.dataset_description() is None


def test_resuming_with_other_classes_is_refused(tmp_path):
    trainer = engine.Trainer(quick(epochs=2), runs_dir=tmp_path, data=own_data())
    trainer.stop_event.set()                        # stops at the first step, with a checkpoint
    assert trainer.run()["status"] == "stopped"
    with pytest.raises(ValueError, match="trained on the classes leaf, coin, shell"):
        engine.Trainer.resuming(trainer.run_dir, data=own_data(NAMES[3:5])).run()


@needs_airnet
def test_finetune_copies_the_backbone_and_whitening_and_makes_a_new_head():
    shipped, _ = weights.load_weights("airnet")
    before = shipped.state_dict()
    cfg = finetune()
    parts = engine.build_parts(cfg, own_data())
    state = parts.raw_model.state_dict()
    head = engine.head_keys("airnet")
    assert head == {"head.weight"} and state["head.weight"].shape == (3, 256)
    # Everything but the head is the shipped CIFAR-10 model's, the whitening included.
    assert all(torch.equal(state[k], before[k]) for k in state if k not in head)
    assert parts.pretrained == {n for n, _ in parts.raw_model.named_parameters()} - head
    lrs = {g["name"]: g["initial_lr"] for g in parts.optimizer.param_groups}  # before the warmup
    assert lrs == {"main": cfg.lr, "pretrained.main": pytest.approx(cfg.lr * cfg.backbone_lr_mult)}
    head_group = next(g for g in parts.optimizer.param_groups if g["name"] == "main")
    assert [p.shape for p in head_group["params"]] == [(3, 256)]


@needs_airnet
@pytest.mark.parametrize("bn_stats", ["frozen", "batch"])
def test_finetune_keeps_or_follows_the_batchnorm_statistics_as_asked(tmp_path, bn_stats):
    shipped = weights.load_weights("airnet")[0].state_dict()
    summary = engine.Trainer(finetune(bn_stats=bn_stats), runs_dir=tmp_path, data=own_data()).run()
    best = weights.load(weights.ModelRef.run(engine.Run.find(summary["run_id"], tmp_path).dir)).model.state_dict()
    stats = [k for k in best if k.endswith(("running_mean", "running_var"))]
    kept = [torch.equal(best[k], shipped[k]) for k in stats]
    assert stats and (all(kept) if bn_stats == "frozen" else not any(kept))
    assert not torch.equal(best["group1.norm1.bias"], shipped["group1.norm1.bias"])  # the shifts learn
    assert torch.equal(best["whiten.weight"], shipped["whiten.weight"])              # frozen, not re-learnt


@needs_airnet
def test_recompute_sets_the_exact_statistics_of_the_training_images():
    data = own_data()
    parts = engine.build_parts(finetune(bn_stats="recompute"), data)
    model = parts.raw_model
    spec = zoo.get_spec("airnet")
    import torch.nn.functional as F

    from cifar_demo.common import normalize

    with torch.no_grad():  # what group1.norm1 sees: its statistics depend on no other BatchNorm
        x = normalize(data.train.images, spec.mean, spec.std)
        feats = model.group1.pool(model.group1.conv1(F.gelu(model.whiten(x))))
    assert torch.allclose(model.group1.norm1.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    assert model.group1.norm1.momentum == 0.4                     # restored after the pass


@needs_airnet
def test_init_from_another_architecture_or_missing_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="holds airnet weights, but the run's model is simple_cnn"):
        quick(init_from="airnet")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        quick(init_from=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ValueError, match="no model card for 'nope'|nope"):
        quick(init_from="nope")


def test_init_from_weights_of_the_same_classes_keeps_their_head(tmp_path):
    # A run's export on the same class list: fine-tuning continues it, head and all.
    first = engine.Trainer(quick(), runs_dir=tmp_path / "runs", data=own_data()).run()
    out = tmp_path / "w"
    model = weights.load(weights.ModelRef.run(engine.Run.find(first["run_id"], tmp_path / "runs").dir)).model
    weights.save_weights(model, out, "simple_cnn-mine", dataset="mine (own images)", dataset_fingerprint="x",
                         test_accuracy=0.5, test_accuracy_tta=None, per_class_accuracy={c: 0.5 for c in THREE},
                         train_config={}, epochs=1, train_seconds=1.0, classes=THREE, architecture="simple_cnn")
    cfg = quick(init_from=str(out / "simple_cnn-mine.safetensors"), backbone_lr_mult=0.5)
    parts = engine.build_parts(cfg, own_data())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in parts.raw_model.state_dict().items())
    assert {g["name"] for g in parts.optimizer.param_groups} == {"pretrained.main"}
    # The same count of other classes: the head is new all the same.
    parts = engine.build_parts(cfg, own_data(NAMES[3:6]))
    (head,) = engine.head_keys("simple_cnn") - {k for k in engine.head_keys("simple_cnn") if k.endswith("bias")}
    assert not torch.equal(parts.raw_model.state_dict()[head], model.state_dict()[head])
    assert "pretrained.main" in {g["name"] for g in parts.optimizer.param_groups}


def test_old_configs_load_and_the_finetune_preset_is_complete():
    old = TrainConfig().to_dict()
    for key in ("init_from", "backbone_lr_mult", "bn_stats"):
        old.pop(key)
    assert TrainConfig.from_dict(old) == TrainConfig()       # a config.json of an older release
    preset = engine.presets()["finetune"]
    assert preset["init_from"] == "airnet" and preset["bn_stats"] == "batch" and preset["backbone_lr_mult"] < 1
    with pytest.raises(ValueError, match="bn_stats must be one of"):
        TrainConfig(bn_stats="sometimes").check_values()


# ------------------------------------------------------------------------ cards, predict, evaluate


def _save(folder, name, classes, **kw):
    model = zoo.create("simple_cnn", num_classes=len(classes)).eval()
    return weights.save_weights(model, folder, name, dataset="mine (own images)", dataset_fingerprint="x",
                                test_accuracy=0.5, test_accuracy_tta=None,
                                per_class_accuracy={c: 0.5 for c in classes}, train_config={}, epochs=1,
                                train_seconds=1.0, classes=classes, **kw)


def test_continued_training_counts_every_stage_on_the_card_once(tmp_path):
    from types import SimpleNamespace

    path, _ = _save(tmp_path, "simple_cnn-mine", THREE, architecture="simple_cnn")
    summary = {"epochs_run": 2, "elapsed_s": 3.0, "hardware": {"cpu": "x"}}
    cfg = quick(init_from=str(path))
    epochs, seconds, stages = export.training_stages(SimpleNamespace(id="run-b"), cfg, summary, THREE)
    assert (epochs, seconds) == (3, 4.0)   # the source card's 1 epoch / 1 s, then this run's
    assert [s["run_id"] for s in stages] == [None, "run-b"] and stages[0]["test_accuracy"] == 0.5
    assert stages[0]["sha256"] == weights.ModelCard.load(path.with_suffix(".json")).sha256
    # The continued weights exported (their card has the stages) and continued once more; an
    # export of the same run again does not count it twice.
    again, _ = _save(tmp_path, "simple_cnn-mine2", THREE, architecture="simple_cnn")
    card = json.loads(again.with_suffix(".json").read_text())
    card["stages"] = stages
    again.with_suffix(".json").write_text(json.dumps(card))
    cfg = quick(init_from=str(again))
    assert export.training_stages(SimpleNamespace(id="run-b"), cfg, summary, THREE)[:2] == (3, 4.0)
    epochs, seconds, stages = export.training_stages(SimpleNamespace(id="run-c"), cfg, summary, THREE)
    assert (epochs, seconds, [s["run_id"] for s in stages]) == (5, 7.0, [None, "run-b", "run-c"])
    # No init_from, or weights of other classes (a new head): the run's own figures only.
    assert export.training_stages(SimpleNamespace(id="r"), quick(), summary, THREE) == (2, 3.0, None)
    other = quick(init_from=str(path))
    assert export.training_stages(SimpleNamespace(id="r"), other, summary, NAMES[3:6]) == (2, 3.0, None)


def test_a_card_records_its_classes_and_architecture_and_loads_its_model(tmp_path):
    _, card_path = _save(tmp_path, "simple_cnn-mine", THREE, architecture="simple_cnn")
    d = json.loads(card_path.read_text())
    assert d["classes"] == list(THREE) and d["architecture"] == "simple_cnn"
    card = weights.ModelCard.from_dict(d)
    assert card.class_names == THREE and card.zoo_name == "simple_cnn" and card.to_dict() == d
    assert [(n, ok) for n, ok, _ in weights.verify(tmp_path)] == [("simple_cnn-mine", True)]
    model, _ = weights.load_weights("simple_cnn-mine", directory=tmp_path)
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 3)
    # per_class_accuracy is held to the card's own classes
    bad = weights.ModelCard.from_dict({**d, "per_class_accuracy": {c: 0.5 for c in CLASSES}})
    assert any("each of the card's classes" in p for p in bad.validate())
    assert any("two or more distinct" in p for p in weights.ModelCard.from_dict({**d, "classes": ["a"]}).validate())
    # a card without classes (every shipped one) means CIFAR-10's, and is written back without them
    shipped = json.loads((weights.weights_dir() / "simple_cnn.json").read_text())
    assert "classes" not in shipped and weights.ModelCard.from_dict(shipped).class_names == CLASSES
    assert weights.ModelCard.from_dict(shipped).to_dict() == shipped


def test_predict_labels_each_model_with_its_classes_and_votes_within_one_list(tmp_path, monkeypatch):
    _save(tmp_path, "simple_cnn-mine", THREE, architecture="simple_cnn")
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path))
    from .synthetic_data import save_random_weights

    save_random_weights(tmp_path, ["simple_cnn", "quiz_dnn"])
    weights.clear_cache()
    image = pictures.to_32x32(picture(0, 1))
    preds = predict.predict_many(image, ["simple_cnn-mine", "simple_cnn", "quiz_dnn"])
    weights.clear_cache()
    assert [list(p.probs) for p in preds] == [list(THREE), list(CLASSES), list(CLASSES)]
    vote = predict.ensemble(preds)                      # the two CIFAR-10 models outvote the one
    assert list(vote) == list(CLASSES)
    assert vote["cat"] == pytest.approx((preds[1].probs["cat"] + preds[2].probs["cat"]) / 2)
    assert list(predict.ensemble(preds[:1])) == list(THREE)


def test_evaluate_scores_any_class_count():
    data = own_data(NAMES[:2])
    model = zoo.create("simple_cnn", num_classes=2)
    res = evaluate.evaluate(model, data.test, num_classes=2, device="cpu")
    assert res.num_classes == 2 and len(res.recall) == 2 and np.array(res.confusion).shape == (2, 2)


# ------------------------------------------------------------------------ export (on real folders)


def _run_on(folder: Path, tmp_path: Path, **kw) -> str:
    return engine.Trainer(quick(data=str(folder), **kw), runs_dir=tmp_path / "runs").run()["run_id"]


def test_export_of_other_classes_never_takes_a_shipped_name(tmp_path):
    folder = make_own_folder(tmp_path / "shells", THREE, per_class=10, test_per_class=3)
    run_id = _run_on(folder, tmp_path)
    runs = tmp_path / "runs"
    assert export.export_name(run_id, runs) == "simple_cnn-shells"
    with pytest.raises(ValueError, match="name of a shipped CIFAR-10 model"):
        export.export_run(run_id, runs_dir=runs, out_dir=tmp_path / "w", name="simple_cnn")
    wpath, cpath, card = export.export_run(run_id, runs_dir=runs, out_dir=tmp_path / "w")
    assert wpath.name == "simple_cnn-shells.safetensors" and card.class_names == FOLDERS
    assert set(card.per_class_accuracy) == set(FOLDERS) and card.zoo_name == "simple_cnn" and card.validate() == []
    zipped = export.export_download(run_id, runs, tmp_path / "dl")
    model, zcard = weights.load_weights_file(zipped)
    assert zipped.name == "simple_cnn-shells.zip" and zcard.class_names == FOLDERS
    # A CIFAR-10 folder of other classes is refused for scoring, by name.
    other = make_own_folder(tmp_path / "other", NAMES[3:6], per_class=6, test_per_class=2)
    with pytest.raises(ValueError, match="score it on its own dataset"):
        export.export_run(run_id, runs_dir=runs, out_dir=tmp_path / "w", data=str(other))


# ------------------------------------------------------------------------ the CLI, end to end


def _env(tmp_path, threads: int):
    import os

    env = dict(os.environ, CIFAR_DEMO_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS=str(threads))
    env.pop("CIFAR_DEMO_DATA", None)
    return env


def cli(tmp_path, *args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "cifar_demo", *map(str, args)], cwd=REPO, env=_env(tmp_path, 2),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def cli_side_by_side(tmp_path, *commands, timeout=300) -> list[str]:
    """Independent CLI calls at once, one thread each (the two cores): their outputs, in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "cifar_demo", *map(str, args)], cwd=REPO,
                              env=_env(tmp_path, 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in commands]
    outs = [proc.communicate(timeout=timeout) for proc in procs]
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


@pytest.mark.slow
@needs_airnet
def test_cli_trains_from_scratch_and_fine_tunes_on_three_new_classes_then_predicts(tmp_path):
    folder = make_own_folder(tmp_path / "trinkets", THREE, per_class=12, test_per_class=4)
    zipped = zip_folder(folder, tmp_path / "trinkets.zip", wrap=True)
    runs = tmp_path / "runs"
    runs.mkdir()
    common = ["--runs-dir", runs, "--batch-size", "8", "--precision", "fp32", "--device", "cpu"]
    # From scratch (a folder) and fine-tuned from airnet (the zip), side by side.
    out, out_tuned = cli_side_by_side(
        tmp_path,
        ["train", "--model", "airnet", "--data", folder, "--epochs", "2", "--lr", "0.05", "--augment", "none",
         "--run-id", "scratch", *common],
        ["train", "--init-from", "airnet", "--data", zipped, "--epochs", "2", "--run-id", "tuned", *common])
    assert "classes coin, leaf, shell" in out and "finished after 2 epoch(s)" in out
    assert "classes coin, leaf, shell" in out_tuned
    scratch, tuned = "scratch", "tuned"
    assert sorted(p.name for p in runs.iterdir()) == ["scratch", "tuned"]
    cfg = engine.Run.find(tuned, runs).config()
    assert (cfg.preset, cfg.init_from, cfg.backbone_lr_mult) == ("finetune", "airnet", 0.1)

    photo = tmp_path / "photo.jpg"
    picture(1, 777).save(photo)                         # a coin, at a size of its own
    predicted, out, exported = cli_side_by_side(
        tmp_path, ["predict", "--run", scratch, "--run", tuned, "--runs-dir", runs, "--json", "--topk", "3", photo],
        ["evaluate", "--run", tuned, "--runs-dir", runs],
        ["export", tuned, "--runs-dir", runs, "--out", tmp_path / "w"])
    predicted = json.loads(predicted)
    for label in (f"run {scratch}", f"run {tuned}"):
        assert {c for c, _ in predicted[str(photo)][label]["top"]} == set(FOLDERS)
    assert "on 12 test images" in out and all(f"  {c} " in out for c in FOLDERS) and "top-5" not in out

    out = exported
    assert "exported airnet-trinkets" in out and "classes: coin, leaf, shell" in out
    out = cli(tmp_path, "predict", "--weights", tmp_path / "w" / "airnet-trinkets.safetensors", photo)
    assert "coin" in out and "airplane" not in out
    assert not (tmp_path / "w" / "airnet.safetensors").exists()


@pytest.mark.slow
@needs_airnet
def test_cli_fine_tunes_two_classes_from_one_folder_zip_and_init_from_none_starts_from_scratch(tmp_path):
    folder = make_own_folder(tmp_path / "pair", NAMES[:2], per_class=15, layout="single")
    zipped = zip_folder(folder, tmp_path / "pair.zip")
    runs = tmp_path / "runs"
    common = ["--data", zipped, "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--device", "cpu",
              "--runs-dir", runs]
    # The fine-tune, and the same preset and budget without its start (bench/own_images.py's
    # "from scratch"), side by side.
    out, _ = cli_side_by_side(tmp_path, ["train", "--preset", "finetune", "--run-id", "tuned", *common],
                              ["train", "--preset", "finetune", "--init-from", "none", "--run-id", "scratch", *common])
    assert "classes coin, leaf" in out
    run, scratch = runs / "tuned", "scratch"
    cfg = engine.Run.find(scratch, runs).config()
    assert (cfg.preset, cfg.init_from, cfg.lr) == ("finetune", None, engine.make_config("finetune").lr)
    photo = tmp_path / "leaf.png"
    picture(0, 555).save(photo)
    out = json.loads(cli(tmp_path, "predict", "--run", run.name, "--runs-dir", runs, "--json", photo))
    top = out[str(photo)][f"run {run.name}"]["top"]
    assert [c for c, _ in top] in (["leaf", "coin"], ["coin", "leaf"]) and len(top) == 2
