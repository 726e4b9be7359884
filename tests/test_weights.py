"""Weights and model cards: round trips, integrity, architecture checks, checkpoints, Hub fallback.

Small hand-made modules (tests/helpers.py's Tiny) stand in for the zoo, so these tests do not depend on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cifar_demo
from cifar_demo import fsio, hardware
from cifar_demo import weights as W
from cifar_demo.weights import store

from .helpers import Tiny, flip_last_byte, save_tiny, trained_tiny

ALL_CARD_KEYS = {
    "schema_version", "model", "params", "dataset", "dataset_fingerprint", "test_accuracy",
    "test_accuracy_tta", "per_class_accuracy", "train_config", "epochs", "train_seconds",
    "hardware", "torch_version", "project_version", "date", "dtype", "sha256", "slice_check",
    "test_digest",
}


# ---------------------------------------------------------------------------- round trips

def test_fp32_round_trip_is_exact_and_keeps_frozen_params_and_buffers(tmp_path):
    model, wpath, cpath = save_tiny(tmp_path)
    assert (wpath, cpath) == (tmp_path / "tiny.safetensors", tmp_path / "tiny.json")
    loaded, card = W.load_weights("tiny", directory=tmp_path, model=Tiny())
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    assert "head.weight" in got and "bn.running_var" in got and "bn.num_batches_tracked" in got
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert not loaded.training
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(model(x), loaded(x))
    assert card.dtype == "float32" and card.model == "tiny"


def test_fp16_round_trip_within_tolerance(tmp_path):
    model, wpath, _ = save_tiny(tmp_path, dtype="float16")
    loaded, card = W.load_weights(wpath, model=Tiny())  # by path this time
    assert card.dtype == "float16"
    stored = load_file(wpath)
    assert stored["conv.weight"].dtype == torch.float16
    assert stored["bn.num_batches_tracked"].dtype == torch.int64  # integers are not cast
    for k, v in model.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == v.dtype, k  # cast back to the model's dtype
        torch.testing.assert_close(got, v, rtol=1e-3, atol=1e-3)
    _, w32, _ = save_tiny(tmp_path / "fp32", model=model)
    assert wpath.stat().st_size < w32.stat().st_size


def test_fp16_overflow_is_refused(tmp_path):
    model = trained_tiny()
    with torch.no_grad():
        model.head.bias[0] = 1e6  # above float16's max of 65504
    with pytest.raises(ValueError, match="head.bias.*float16"):
        save_tiny(tmp_path, model=model, dtype="float16")
    assert list(tmp_path.iterdir()) == []


def test_load_without_model_builds_it_through_the_zoo(tmp_path, monkeypatch):
    save_tiny(tmp_path)
    built = []
    monkeypatch.setattr(store, "create_model", lambda name: built.append(name) or Tiny())
    model, _ = W.load_weights("tiny", directory=tmp_path)
    assert built == ["tiny"] and isinstance(model, Tiny)


# ---------------------------------------------------------------------------- the card

def test_card_has_every_field_and_round_trips_through_json(tmp_path):
    model, wpath, cpath = save_tiny(tmp_path)
    d = json.loads(cpath.read_text())
    assert set(d) == ALL_CARD_KEYS
    card = W.ModelCard.load(cpath)
    assert card.params == sum(p.numel() for p in model.parameters())
    assert card.sha256 == fsio.sha256_file(wpath)
    assert card.project_version == cifar_demo.__version__ and card.torch_version == torch.__version__
    assert card.date.endswith("+00:00")  # ISO, UTC
    assert card.hardware == hardware.hardware_info()  # this machine, as export did not name another
    assert card.schema_version == W.CARD_SCHEMA_VERSION
    assert card.validate() == []
    assert W.ModelCard.from_json(card.to_json()) == card
    assert W.ModelCard.from_dict(d).to_dict() == d


def test_card_keeps_unknown_keys_and_refuses_newer_schema_or_missing_fields(tmp_path):
    _, _, cpath = save_tiny(tmp_path)
    d = json.loads(cpath.read_text())
    card = W.ModelCard.from_dict({**d, "license": "MIT"})
    assert card.extra == {"license": "MIT"}
    card.save(tmp_path / "copy.json")
    assert json.loads((tmp_path / "copy.json").read_text())["license"] == "MIT"

    with pytest.raises(ValueError, match="schema_version 2 is newer"):
        W.ModelCard.from_dict({**d, "schema_version": 2})
    del d["sha256"], d["dataset"]
    cpath.write_text(json.dumps(d))
    with pytest.raises(W.WeightsError, match=r"tiny\.json.*lacks dataset, sha256"):
        W.ModelCard.load(cpath)


def test_invalid_card_values_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="test_accuracy 90.1 is not in"):
        save_tiny(tmp_path, test_accuracy=90.1)  # a percentage, not a fraction
    with pytest.raises(ValueError, match="per_class_accuracy"):
        save_tiny(tmp_path, per_class_accuracy={"cat": 0.5})
    with pytest.raises(ValueError, match="dtype"):
        save_tiny(tmp_path, dtype="bfloat16")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- integrity

def test_tampered_weights_are_refused_by_sha256(tmp_path):
    _, wpath, _ = save_tiny(tmp_path)
    flip_last_byte(wpath)
    with pytest.raises(W.WeightsError, match="sha256") as e:
        W.load_weights("tiny", directory=tmp_path, model=Tiny())
    assert str(wpath) in str(e.value)


def test_sha_is_checked_before_tensors_are_parsed(tmp_path, monkeypatch):
    _, wpath, _ = save_tiny(tmp_path)
    flip_last_byte(wpath)
    monkeypatch.setattr(store, "load_safetensors_bytes", lambda data: pytest.fail("parsed before hashing"))
    with pytest.raises(W.WeightsError, match="sha256"):
        W.load_weights(wpath, model=Tiny())


def write_pair_for(module: nn.Module, directory: Path, name: str = "tiny") -> Path:
    """A valid safetensors + card with the right sha256, for whatever `module` is."""
    _, wpath, _ = save_tiny(directory, name=name, model=module)
    return wpath


def tiny_without_head_bias() -> Tiny:
    m = Tiny()
    m.head = nn.Linear(4, 10, bias=False)
    return m


@pytest.mark.parametrize("other, problem, keys", [
    (tiny_without_head_bias, "missing keys (1)", ["head.bias"]),
    (lambda: Tiny(extra=True), "unexpected keys (2)", ["extra.weight", "extra.bias"]),
    (lambda: Tiny(width=6), "shape mismatch (6)",
     ["conv.weight: file (6, 3, 3, 3), model (4, 3, 3, 3)", "bn.running_mean"]),
])
def test_wrong_architecture_is_refused_naming_problem_and_keys(tmp_path, other, problem, keys):
    wpath = write_pair_for(other(), tmp_path)
    with pytest.raises(W.WeightsError) as e:
        W.load_weights("tiny", directory=tmp_path, model=Tiny())
    msg = str(e.value)
    assert str(wpath) in msg and problem in msg
    for k in keys:
        assert k in msg


def test_error_lists_only_the_first_few_keys(tmp_path):
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(6)])
    write_pair_for(big, tmp_path)
    unexpected = r"unexpected keys \(12\): 0\.bias, 0\.weight, 1\.bias, 1\.weight, 2\.bias \(\+7 more\)"
    with pytest.raises(W.WeightsError, match=unexpected):
        W.load_weights("tiny", directory=tmp_path, model=Tiny())


# ---------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip_and_truncated_or_corrupt_file(tmp_path):
    state = {"model": trained_tiny().state_dict(), "epoch": 3, "config": {"lr": 0.1},
             "rng": torch.get_rng_state()}
    path = W.save_checkpoint(state, tmp_path / "run" / "last.pt")
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.pt"]  # no temp file left
    back = W.load_checkpoint(path)
    assert back["epoch"] == 3 and torch.equal(back["model"]["bn.running_var"], state["model"]["bn.running_var"])

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(W.WeightsError, match=r"last\.pt: corrupt or truncated checkpoint"):
        W.load_checkpoint(path)
    path.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(W.WeightsError, match="corrupt or truncated"):
        W.load_checkpoint(path)
    with pytest.raises(W.WeightsError, match="not found"):
        W.load_checkpoint(tmp_path / "nope.pt")


class _Evil:
    """Unpickling this would create a file: proof that arbitrary code ran."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_checkpoint_loading_refuses_pickled_objects(tmp_path):
    evil = _Evil()
    evil.marker = str(tmp_path / "pwned")
    torch.save({"epoch": 1, "payload": evil}, tmp_path / "evil.pt")
    with pytest.raises(W.WeightsError, match=r"evil\.pt: refused to unpickle .*open"):
        W.load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


# ---------------------------------------------------------------------------- verify, listing

def test_verify_reports_good_and_bad_pairs(tmp_path):
    save_tiny(tmp_path, name="good")
    _, bad, _ = save_tiny(tmp_path, name="tampered")
    flip_last_byte(bad)
    _, _, cpath = save_tiny(tmp_path, name="miscounted")
    d = json.loads(cpath.read_text())
    d["params"] += 1
    cpath.write_text(json.dumps(d))
    save_tiny(tmp_path, name="wrongarch", model=trained_tiny(width=6))
    save_tiny(tmp_path, name="orphan")
    (tmp_path / "orphan.json").unlink()

    report = {name: (ok, msg) for name, ok, msg in W.verify(tmp_path, create=lambda name: Tiny())}
    assert list(report) == sorted(report)
    assert report["good"][0] and report["good"][1].startswith("ok")
    assert not report["tampered"][0] and "sha256" in report["tampered"][1]
    assert not report["miscounted"][0] and "card says 167, the file holds 166" in report["miscounted"][1]
    assert not report["wrongarch"][0] and "shape mismatch" in report["wrongarch"][1]
    assert report["orphan"] == (False, "missing orphan.json")


def test_verify_reports_a_model_the_zoo_cannot_build(tmp_path):
    save_tiny(tmp_path)

    def create(name):
        raise KeyError(f"unknown model {name!r}")

    [(name, ok, msg)] = W.verify(tmp_path, create=create)
    assert (name, ok) == ("tiny", False) and "cannot build 'tiny'" in msg


def test_available_card_for_and_weights_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)
    assert W.weights_dir() == Path(cifar_demo.__file__).resolve().parent.parent / "weights"
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path))
    assert W.weights_dir() == tmp_path and W.available() == []
    save_tiny(tmp_path, name="b")
    save_tiny(tmp_path, name="a", dtype="float16")
    (tmp_path / "b.safetensors").rename(tmp_path / "c.safetensors")  # b: card only
    assert W.available() == ["a"]
    assert W.card_for("a").dtype == "float16"
    with pytest.raises(W.WeightsError, match="no model card for 'zz'"):
        W.card_for("zz")
    with pytest.raises(W.WeightsError, match="not a valid model name"):
        W.card_for("../etc")


def test_atomic_save_leaves_no_temp_files_and_keeps_old_files_on_failure(tmp_path, monkeypatch):
    save_tiny(tmp_path)
    save_tiny(tmp_path, model=trained_tiny(seed=1))  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json", "tiny.safetensors"]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "save_file", disk_full)
    with pytest.raises(OSError):
        save_tiny(tmp_path, model=trained_tiny(seed=2))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_saved_files_get_the_umask_mode_not_mkstemps_owner_only(tmp_path):
    # mkstemp's 0600 survived the rename: an app run as another user could not read the weights.
    import os
    _, weights_path, card_path = save_tiny(tmp_path)
    W.ModelCard.load(card_path).save(tmp_path / "copy.json")
    W.save_checkpoint({"x": torch.zeros(1)}, tmp_path / "ckpt.pt")
    expected = 0o666 & ~fsio._UMASK
    for p in (weights_path, card_path, tmp_path / "copy.json", tmp_path / "ckpt.pt"):
        assert os.stat(p).st_mode & 0o777 == expected, p.name


# ---------------------------------------------------------------------------- Hub fallback

def test_missing_model_with_failing_hub_gives_the_helpful_message(tmp_path, monkeypatch):
    calls = []

    def hub_down(repo_id, filename, local_files_only=False, **kw):
        calls.append((repo_id, filename, local_files_only))
        raise OSError("no connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_down)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("CIFAR_DEMO_HUB_REPO", "someone/cifar-weights")
    with pytest.raises(W.WeightsError) as e:
        W.load_weights("resnet18", directory=tmp_path, model=Tiny())
    msg = str(e.value)
    for part in ["resnet18.safetensors and resnet18.json not found", str(tmp_path), "'someone/cifar-weights'",
                 "python -m cifar_demo train --model resnet18", "python -m cifar_demo export RUN_ID",
                 "CIFAR_DEMO_HUB_REPO", "connect to the internet", "no connection"]:
        assert part in msg, part
    assert [c[2] for c in calls] == [True, False]  # cache first, then online


def test_hf_hub_offline_stops_at_the_cache(tmp_path, monkeypatch):
    calls = []

    def cache_miss(repo_id, filename, local_files_only=False, **kw):
        calls.append(local_files_only)
        raise huggingface_hub.errors.LocalEntryNotFoundError("not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_miss)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CIFAR_DEMO_HUB_REPO", "someone/cifar-weights")
    with pytest.raises(W.WeightsError, match="HF_HUB_OFFLINE=1") as e:
        W.load_weights("resnet18", directory=tmp_path, model=Tiny())
    assert calls == [True]
    assert "unset HF_HUB_OFFLINE" in str(e.value)


def test_hub_is_used_when_local_files_are_missing(tmp_path, monkeypatch):
    hub_files = tmp_path / "hub"
    model, _, _ = save_tiny(hub_files)
    local = tmp_path / "weights"
    local.mkdir()
    calls = []

    def fake_download(repo_id, filename, local_files_only=False, **kw):
        calls.append((repo_id, filename, local_files_only))
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not in cache")
        return str(hub_files / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("CIFAR_DEMO_HUB_REPO", "someone/cifar-weights")
    loaded, card = W.load_weights("tiny", directory=local, model=Tiny())
    assert card.model == "tiny"
    assert torch.equal(loaded.state_dict()["bn.running_mean"], model.state_dict()["bn.running_mean"])
    assert calls == [("someone/cifar-weights", "tiny.json", True),
                     ("someone/cifar-weights", "tiny.json", False),
                     ("someone/cifar-weights", "tiny.safetensors", False)]
    assert list(local.iterdir()) == []  # the Hub copy stays in the HF cache
