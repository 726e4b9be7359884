"""The run directory (train.Run owns its layout) and its compatibility: a run checkpointed by
the engine as it was before the train/ package (commit 64eccb1, one train.py) resumes with
this one and ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import threading

import pytest
import torch
from safetensors.torch import load_file

from cifar_demo import runs, weights
from cifar_demo import train as engine

from .helpers import REPO, StopAfter, cfg, run

OLD_ENGINE = "64eccb1"  # the last commit with the one-file engine (cifar_demo/train.py)
# The checkpoint's keys and its "state" keys as the one-file engine wrote them.
OLD_CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "scaler", "ema", "lookahead", "state", "rng"}
OLD_STATE_KEYS = {"epoch", "batch", "step", "best_val_acc", "best_epoch", "bad_epochs", "epoch_sums", "elapsed_s"}
RESUMABLE = dict(epochs=2, train_limit=120, augment="translate2_altflip", ema=0.9)  # 3 steps per epoch


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_data):
    """A 2-epoch run straight through with this engine: (its best weights, its model checkpoint)."""
    _, run_dir = run(cfg(**RESUMABLE), tmp_path_factory.mktemp("full"), tiny_data)
    return load_file(str(run_dir / engine.BEST_FILE)), torch.load(run_dir / engine.CHECKPOINT_FILE,
                                                                   weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _assert_resumes_to(run_dir, uninterrupted, data) -> None:
    summary = engine.Trainer.resuming(run_dir, data=data).run()
    assert summary["status"] == "finished" and summary["steps"] == 6
    best, model = uninterrupted
    assert _same(load_file(str(run_dir / engine.BEST_FILE)), best)
    assert _same(torch.load(run_dir / engine.CHECKPOINT_FILE, weights_only=True)["model"], model)


# ------------------------------------------------------------------------ the layout


def test_run_owns_the_layout(tmp_path, tiny_data):
    with pytest.raises(FileNotFoundError, match="no run at"):
        engine.Run.find("nope", tmp_path)
    summary, run_dir = run(cfg(train_limit=40), tmp_path, tiny_data)
    r = engine.Run.find(run_dir.name, tmp_path / "runs")       # by id under the runs root...
    assert r == engine.Run.find(run_dir) and r.id == run_dir.name  # ...or by directory
    assert {p.name for p in run_dir.iterdir()} == {r.config_path.name, r.metrics_path.name, r.checkpoint_path.name,
                                                    r.best_path.name, r.best_digest_path.name, r.summary_path.name,
                                                        runs.EPOCHS_DIR}
    assert r.config() == cfg(train_limit=40) and r.summary() == json.loads(json.dumps(summary))
    assert r.has_best() and r.has_checkpoint() and r.metrics()[0]["kind"] == "start"
    assert engine.list_runs(tmp_path / "runs") == [{"run_id": r.id, "dir": str(r.dir), "config": r.config_dict(),
                                                    "summary": r.summary(), "has_best": True}]
    model = weights.load(weights.ModelRef.run(r.dir)).model
    assert _same(model.state_dict(), load_file(str(r.best_path)))
    with pytest.raises(FileExistsError):
        engine.Run.create(run_dir, cfg())  # a run id names one run
    # A killed run's half-written last line is skipped; its summary is absent, not an error.
    with open(r.metrics_path, "a") as f:
        f.write('{"kind": "step", "st')
    r.summary_path.unlink()
    assert r.metrics()[-1]["kind"] == "end" and r.summary() is None
    r.checkpoint_path.unlink()
    with pytest.raises(FileNotFoundError, match="no checkpoint yet"):
        engine.Trainer.resuming(r.id, runs_dir=tmp_path / "runs")


# ------------------------------------------------------------------------ old run directories


def test_a_checkpoint_in_the_old_layout_resumes(tmp_path, tiny_data, uninterrupted):
    _, run_dir = run(cfg(**RESUMABLE), tmp_path, tiny_data, stop_event=StopAfter(4))
    path = run_dir / engine.CHECKPOINT_FILE
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == OLD_CHECKPOINT_KEYS and set(ckpt["state"]) == OLD_STATE_KEYS  # what is written
    # Rewrite it as the one-file engine wrote it: plain Python numbers, the sums as a bare list.
    s = ckpt["state"]
    ckpt["state"] = {"epoch": 1, "batch": 1, "step": 4, "best_val_acc": float(s["best_val_acc"]), "best_epoch": 1,
                     "bad_epochs": 0, "epoch_sums": [float(v) for v in s["epoch_sums"]],
                     "elapsed_s": float(s["elapsed_s"])}
    torch.save(ckpt, path)
    # The config as the one-file engine wrote it (its fields, sorted, indented).
    fields = json.loads((run_dir / engine.CONFIG_FILE).read_text())
    (run_dir / engine.CONFIG_FILE).write_text(json.dumps(fields, indent=2, sort_keys=True))
    _assert_resumes_to(run_dir, uninterrupted, tiny_data)


def _old_engine(monkeypatch):
    """cifar_demo/train.py as of OLD_ENGINE, loaded from git as a module of the package."""
    try:
        source = subprocess.run(["git", "show", f"{OLD_ENGINE}:cifar_demo/train.py"], cwd=REPO,
                                capture_output=True, text=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip(f"git history with commit {OLD_ENGINE} is not available (a shallow clone?)")
    name = f"cifar_demo._train_{OLD_ENGINE}"
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader=None))
    module.__package__ = "cifar_demo"
    monkeypatch.setitem(sys.modules, name, module)  # dataclasses looks its module up
    exec(compile(source, f"{OLD_ENGINE}:cifar_demo/train.py", "exec"), module.__dict__)
    return module


def _as_the_old_engine_saw_the_package(m: pytest.MonkeyPatch, old) -> None:
    """The package as the old engine knew it: zoo models that take normalised input (today they
    normalise pictures themselves), loaders that normalise, cifar_demo.evaluate with mean/std.
    Only the wiring differs: the arithmetic is the same, so its steps are today's steps."""
    import types

    import cifar_demo
    from cifar_demo import data, zoo
    from cifar_demo.analysis import evaluate
    from cifar_demo.common import normalize
    from cifar_demo.zoo.registry import _normalize_input

    def create(name, **kw):  # the model without its input normalisation
        model = zoo.create(name, **kw)
        model._forward_pre_hooks.clear()
        return model

    class TensorLoader(data.TensorLoader):
        def __init__(self, *args, mean, std, **kw):
            super().__init__(*args, **kw)
            self.norm = (mean, std)

        def iter_from(self, epoch, start_batch=0):
            for x, *rest in super().iter_from(epoch, start_batch):
                yield (normalize(x, *self.norm), *rest)  # the cutout's mean colour -> 0, as it was

    def old_evaluate(model, split, *, mean, std, **kw):
        hook = model.register_forward_pre_hook(_normalize_input)  # its buffers are still there
        try:
            return evaluate.evaluate(model, split, **kw)
        finally:
            hook.remove()

    m.setattr(old, "zoo", types.SimpleNamespace(**{k: getattr(zoo, k) for k in ("names", "specs", "get_spec")},
                                                create=create))
    m.setattr(cifar_demo, "data", types.SimpleNamespace(**{**vars(data), "TensorLoader": TensorLoader}))
    m.setattr(cifar_demo, "evaluate", types.SimpleNamespace(evaluate=old_evaluate, TTA_MODES=evaluate.TTA_MODES),
              raising=False)


@pytest.mark.slow   # runs the old engine from git for a whole run
def test_a_run_stopped_by_the_old_one_file_engine_resumes_exactly(tmp_path, tiny_data, uninterrupted, monkeypatch):
    old = _old_engine(monkeypatch)
    stop = threading.Event()

    def stop_after_step_4(event):  # the old engine reported every step
        if event.get("kind") == "step" and event["step"] == 4:
            stop.set()

    # The old engine knows only its own fields; those added since are at their defaults, which
    # mean "as before" (no init_from, BatchNorm as PyTorch's default, one learning rate, no teacher).
    known = {f.name for f in dataclasses.fields(old.TrainConfig)}
    settings = {k: v for k, v in cfg(**RESUMABLE).to_dict().items() if k in known}
    assert {k: v for k, v in cfg(**RESUMABLE).to_dict().items() if k not in known} == \
        {"init_from": None, "backbone_lr_mult": 1.0, "bn_stats": "batch", "whiten_bias_lr_mult": 1.0,
         "muon_lr": 0.24, "muon_momentum": 0.6, "muon_ns_steps": 3, "muon_renorm": True,
         "distill": None, "distill_weight": 0.5, "low_res": 0, "low_res_epochs": 0, "low_res_mode": "resize",
         "tta_confidence": 0.0}
    trainer = old.Trainer(old.TrainConfig(**settings), runs_dir=tmp_path, data=tiny_data,
                          sinks=[stop_after_step_4], stop_event=stop)
    with monkeypatch.context() as m:
        _as_the_old_engine_saw_the_package(m, old)
        assert trainer.run()["status"] == "stopped"
    assert set(torch.load(trainer.run_dir / "checkpoint.pt", weights_only=True)) == OLD_CHECKPOINT_KEYS
    _assert_resumes_to(trainer.run_dir, uninterrupted, tiny_data)


# ------------------------------------------------------------------------ imports


@pytest.mark.slow
@pytest.mark.parametrize("first", ["cifar_demo.zoo", "cifar_demo.train", "cifar_demo.recipe",
                                   "cifar_demo.zoo.registry", "cifar_demo.reporting.export"])
def test_the_zoo_and_the_engine_import_in_any_order(first):
    # The registry imports the vocabulary from train/config.py while the zoo registers its
    # models, and the engine imports the zoo: whichever comes first, both end up whole.
    code = (f"import {first}; from cifar_demo import train, zoo; "
            "assert zoo.RECIPE_KEYS is train.RECIPE_KEYS and len(zoo.names()) == 10; "
            "train.make_config(model='airnet')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "/etc", ".hidden", "x" * 129, "a b", "é",
                                 "a\x00b", None, 5])
def test_check_run_id_refuses_anything_but_a_plain_name(bad):
    with pytest.raises(ValueError, match="not a run id"):
        engine.check_run_id(bad)


def test_run_by_id_reads_only_its_folder_and_says_nothing_of_what_exists(tmp_path):
    mine, other = tmp_path / "visitors" / "alice", tmp_path / "visitors" / "bob"
    engine.Run.create(other / "20260101-000000-airnet-beef", cfg())
    engine.Run.create(mine / "20260101-000000-airnet-cafe", cfg())
    assert engine.Run.by_id("20260101-000000-airnet-cafe", mine).dir == mine / "20260101-000000-airnet-cafe"
    for crafted in ("../bob/20260101-000000-airnet-beef", str(other / "20260101-000000-airnet-beef")):
        with pytest.raises(ValueError, match="not a run id"):
            engine.Run.by_id(crafted, mine)
    with pytest.raises(FileNotFoundError) as missing:
        engine.Run.by_id("20260101-000000-airnet-beef", mine)   # bob's id: not in alice's folder
    assert str(missing.value) == "no run 20260101-000000-airnet-beef here"
    # The CLI's Run.find still takes a directory from a local user.
    assert engine.Run.find(other / "20260101-000000-airnet-beef").dir == other / "20260101-000000-airnet-beef"
