"""The command line: zoo tables, readable errors, and train -> export -> evaluate -> predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_demo import zoo
from cifar_demo.__main__ import main

from .app_server import make_dataset

REPO = Path(__file__).resolve().parents[1]


def cli(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "cifar_demo", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def cli_side_by_side(*commands, env, timeout=600) -> list[subprocess.CompletedProcess]:
    """Independent CLI calls at once, one thread each (the two cores), as CompletedProcesses."""
    env = dict(env, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-m", "cifar_demo", *map(str, args)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in commands]
    outs = [proc.communicate(timeout=timeout) for proc in procs]   # sets each returncode
    return [subprocess.CompletedProcess(proc.args, proc.returncode, *out) for proc, out in zip(procs, outs)]


def test_zoo_lists_the_ten_models_with_their_counts(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for spec in zoo.specs():
        assert spec.name in out and f"{spec.params:,}" in out
    assert len(zoo.specs()) == 10
    assert main(["zoo", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == zoo.names()
    assert {r["name"]: r["params"] for r in rows}["quiz_dnn"] == 299_018


def test_zoo_markdown_fills_the_readme_markers(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- zoo-table:start -->\nold\n<!-- zoo-table:end -->\noutro\n")
    assert main(["zoo", "--markdown", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert "| `resnet18` |" in text and "11,173,962" in text


@pytest.mark.slow   # times every zoo model
def test_zoo_latency_is_measured_written_and_shown_in_the_table(tmp_path, capsys):
    from cifar_demo.reporting import report

    path = tmp_path / "latency.json"
    assert "not measured yet" in report.zoo_markdown(path)           # no file: says so
    assert main(["zoo", "--latency", str(path)]) == 0
    record = json.loads(path.read_text())
    assert set(record["latency_ms"]) == set(zoo.names()) and all(v > 0 for v in record["latency_ms"].values())
    assert record["batch"] == 1 and record["runs"] == 50 and record["hardware"]["cores"] >= 1
    table = report.zoo_markdown(path)
    row = next(line for line in table.splitlines() if line.startswith("| `resnet18` |"))
    assert f"| {record['latency_ms']['resnet18']:.1f} ms |" in row
    assert "median of 50 forward passes, measured by `python -m cifar_demo zoo --latency`" in table
    path.write_text("{not json")                                          # a broken file is ignored
    assert "not measured yet" in report.zoo_markdown(path)


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["train"], "give --model NAME or --preset NAME"),
    (["train", "--model", "resnet1000"], "unknown model 'resnet1000'"),
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--model", "airnet", "--mixes", "[1]"], "expected a JSON object"),
    (["train", "--resume", "no-such-run"], "no run at"),
    (["evaluate"], "exactly one of --model NAME, --weights FILE or --run RUN_ID"),
])
def test_bad_arguments_exit_nonzero_with_a_readable_message(args, message, tmp_path):
    env = dict(os.environ, CIFAR_DEMO_RUNS=str(tmp_path / "runs"))
    proc = cli(*args, env=env, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_missing_dataset_is_one_clear_error(tmp_path):
    env = dict(os.environ, CIFAR_DEMO_DATA=str(tmp_path / "nowhere"))
    proc = cli("train", "--model", "quiz_dnn", "--epochs", "1", env=env, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr


@pytest.mark.slow
def test_train_export_evaluate_predict_on_a_jpeg_slice(tmp_path, jpeg_export):
    # Real pictures, few of them: 150 training and 100 test images a class of the JPEG export
    # (export scores the whole test set three times; on all 10,000 that alone took ~75 s).
    # Ten class folders under train/ and test/: read as the JPEG export, labelled as such.
    slice_dir, kind = make_dataset(tmp_path / "data", {"train": 150, "test": 100})
    assert kind == "CIFAR-10 (JPEG export) slice"
    env = dict(os.environ, CIFAR_DEMO_RUNS=str(tmp_path / "runs"), CIFAR_DEMO_WEIGHTS=str(tmp_path / "weights"),
               CIFAR_DEMO_DATA=str(slice_dir))
    # simple_cnn: the cheapest zoo model to score
    proc = cli("train", "--model", "simple_cnn", "--data", slice_dir, "--epochs", "1", "--train-limit", "1000",
               "--val-size", "500", "--batch-size", "50", "--test-limit", "500", "--augment", "none", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best validation accuracy" in proc.stdout and "test accuracy" in proc.stdout
    run_id = next((tmp_path / "runs").iterdir()).name

    proc = cli("export", run_id, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((tmp_path / "weights" / "simple_cnn.json").read_text())
    assert card["dataset"] == "CIFAR-10 (JPEG export)" and card["train_config"]["train_limit"] == 1000

    # The card's slice check, an evaluation with plots and a prediction: side by side.
    sc = card["slice_check"]
    sample = REPO / "cifar_demo" / "assets" / "sample" / "cat" / "0000.png"
    checked, plotted, predicted = cli_side_by_side(
        ["evaluate", "--model", "simple_cnn", "--json", "--start", sc["start"], "--step", sc["step"],
         "--limit", sc["n"]],
        ["evaluate", "--model", "simple_cnn", "--limit", "200", "--plots", tmp_path / "plots"],
        ["predict", sample, "--json"], env=env)
    proc = checked
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads(proc.stdout)
    assert metrics["n"] == 1000 and metrics["accuracy"] == pytest.approx(sc["accuracy"], abs=0.002)
    assert metrics["accuracy"] > 0.15  # one epoch on 1,000 images learns something

    proc = plotted
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy" in proc.stdout and "macro" in proc.stdout
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert pngs == ["confusion.png", "confusion_normalized.png", "misclassified.png", "per_class_accuracy.png",
                    "reliability.png"]
    assert all((tmp_path / "plots" / n).read_bytes()[:4] == b"\x89PNG" for n in pngs)

    proc = predicted
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)[str(sample)]
    assert set(out["simple_cnn"]) == {"top", "latency_ms"} and len(out["simple_cnn"]["top"]) == 3
    assert out["resnet18"] == {"error": "no weights shipped yet"}


def test_fp16_export_is_refused_where_it_moves_test_accuracy_by_more_than_005_points():
    from cifar_demo.reporting.export import check_fp16

    check_fp16(0.9000, 0.9000)
    check_fp16(0.9000, 0.9005)          # 5 of 10,000 images: allowed
    check_fp16(0.9000, 0.8995)
    with pytest.raises(ValueError, match=r"90.00% to 89.94% \(0.06 points.*--dtype float32"):
        check_fp16(0.9000, 0.8994)
    with pytest.raises(ValueError, match="more than 0.05"):
        check_fp16(0.8000, 0.8100)


@pytest.mark.slow   # real JPEG data, every severity
def test_robustness_prints_accuracy_by_severity_for_one_corruption(jpeg_export, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    args = ["robustness", "--model", "simple_cnn", "--corruption", "contrast", "--n", "50", "--data", jpeg_export]
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [r[0] for r in rows] == ["0", "1", "2", "3", "4", "5"]
    accuracy = [float(r[-1]) for r in rows]
    assert accuracy[5] < accuracy[0]  # contrast 0.15 of the original costs a CIFAR model accuracy
    assert main([str(a) for a in args] + ["--json"]) == 0  # second time from the cache
    assert "contrast" in capsys.readouterr().out


def test_familiarity_flags_noise_and_explains_a_missing_argument(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise)
    assert main(["familiarity", str(noise), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[str(noise)]["unfamiliar"] is True
    assert main(["familiarity"]) == 2
    assert "give image files" in capsys.readouterr().err


# ---------------------------------------------------------------------------- predict --weights


@pytest.fixture()
def downloaded(tmp_path, monkeypatch):
    """A zoo model's weights as a download (.zip) and as a pair on disk; no shipped weights."""
    import torch

    from cifar_demo import weights

    from .helpers import CARD_FIELDS

    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path / "shipped"))
    torch.manual_seed(0)
    model = zoo.create("optimized200k").eval()
    w, c = weights.save_weights(model, tmp_path / "pair", "optimized200k", **CARD_FIELDS)
    return model, weights.write_weights_zip(w, c, tmp_path / "mine.zip"), w


def test_predict_with_a_weights_file_uses_it_and_only_it(downloaded, capsys):
    from cifar_demo.analysis import predict
    from cifar_demo.data import pictures

    model, zip_path, pair = downloaded
    sample = REPO / "cifar_demo" / "assets" / "sample" / "cat" / "0000.png"
    assert main(["predict", str(sample), "--weights", str(zip_path), "--weights", str(pair), "--json",
                 "--topk", "10"]) == 0
    out = json.loads(capsys.readouterr().out)[str(sample)]
    assert list(out) == ["mine.zip", "optimized200k.safetensors"]  # no shipped model was asked
    want, _ = predict.predict_one(model, pictures.to_32x32(pictures.load_image(sample)))
    for answer in out.values():
        assert {c: p for c, p in answer["top"]} == pytest.approx(want, abs=1e-6)
    # With --model too, the shipped ones answer beside it (here: none are shipped, which is said).
    assert main(["predict", str(sample), "--weights", str(zip_path), "--model", "airnet"]) == 0
    text = capsys.readouterr().out
    assert "airnet" in text and "no weights shipped yet" in text and "mine.zip" in text


def test_predict_with_a_tampered_or_lone_weights_file_is_one_clear_error(downloaded, tmp_path, capsys):
    from .helpers import flip_last_byte

    _, zip_path, pair = downloaded
    sample = REPO / "cifar_demo" / "assets" / "sample" / "cat" / "0000.png"
    flip_last_byte(pair)
    assert main(["predict", str(sample), "--weights", str(pair)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pair}: sha256 mismatch") and "Traceback" not in err
    pair.with_suffix(".json").unlink()
    assert main(["predict", str(sample), "--weights", str(pair)]) == 2
    assert "needs its model card beside it" in capsys.readouterr().err
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert main(["predict", str(sample), "--weights", str(tmp_path / "junk.zip")]) == 2
    assert "not a readable weights zip" in capsys.readouterr().err


def test_evaluate_scores_a_download_on_test_or_val_and_refuses_a_tampered_one(downloaded, tmp_path, capsys):
    from cifar_demo import data as D
    from cifar_demo.analysis import evaluate

    from .helpers import flip_last_byte, write_imagefolder

    model, zip_path, pair = downloaded
    folder = write_imagefolder(tmp_path / "data", n_train=10, n_test=20)
    assert main(["evaluate", "--weights", str(zip_path), "--data", str(folder), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = evaluate.evaluate(model, D.load_split("test", D.resolve_source(folder)))
    assert got["accuracy"] == pytest.approx(want.accuracy) and got["model"] == "optimized200k"
    # The validation split a run with this size and seed held out (the card's, unless given).
    assert main(["evaluate", "--weights", str(zip_path), "--data", str(folder), "--split", "val",
                 "--val-size", "10", "--seed", "3", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    val = D.load_dataset(folder, val_size=10, seed=3).val
    want = evaluate.evaluate(model, val)
    assert (got["split"], got["n"], got["val_size"], got["seed"]) == ("val", len(val), 10, 3)
    assert got["accuracy"] == pytest.approx(want.accuracy)
    assert main(["evaluate", "--weights", str(zip_path), "--data", str(folder), "--split", "val",
                 "--val-size", "10", "--seed", "3"]) == 0
    assert f"on {len(val)} validation images" in capsys.readouterr().out
    flip_last_byte(pair)
    assert main(["evaluate", "--weights", str(pair), "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {pair}: sha256 mismatch") and "Traceback" not in err


def test_evaluate_with_tta_for_unsure_images_says_how_many_got_the_views(downloaded, tmp_path, capsys):
    from cifar_demo import data as D
    from cifar_demo.analysis import evaluate

    from .helpers import write_imagefolder

    model, zip_path, _ = downloaded
    folder = write_imagefolder(tmp_path / "data", n_train=10, n_test=20)
    test = D.load_split("test", D.resolve_source(folder))
    plain = evaluate.evaluate(model, test)
    bar = sorted(plain.confidences)[len(test) // 2]      # about half below it
    assert main(["evaluate", "--weights", str(zip_path), "--data", str(folder), "--tta", "flip_translate",
                 "--tta-confidence", str(bar), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = evaluate.evaluate(model, test, tta="flip_translate", tta_confidence=bar)
    assert got["tta_images"] == sum(c < bar for c in plain.confidences) and 0 < got["tta_images"] < len(test)
    assert got["accuracy"] == pytest.approx(want.accuracy) and got["plain_accuracy"] == pytest.approx(plain.accuracy)
    assert main(["evaluate", "--weights", str(zip_path), "--data", str(folder), "--tta", "flip",
                 "--tta-confidence", "1.5"]) == 2
    assert "--tta-confidence must be in [0, 1]" in capsys.readouterr().err


@pytest.mark.slow
def test_predict_with_a_tampered_download_exits_nonzero_without_a_traceback(downloaded, tmp_path):
    import zipfile

    _, zip_path, _ = downloaded
    with zipfile.ZipFile(zip_path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    name = "optimized200k.safetensors"
    members[name] = members[name][:-1] + bytes([members[name][-1] ^ 0xFF])
    with zipfile.ZipFile(tmp_path / "tampered.zip", "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    sample = REPO / "cifar_demo" / "assets" / "sample" / "cat" / "0000.png"
    proc = cli("predict", sample, "--weights", tmp_path / "tampered.zip", timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"{tmp_path / 'tampered.zip'}: sha256 mismatch" in proc.stderr
