"""robustness: accuracy against corruption x severity, cached per weights file.

Two small zoo models with random weights in a tmp weights folder (as tests/test_ui_predict.py
makes them), scored on the bundled sample or a tiny synthetic ImageFolder export.
"""

import json

import pytest
import torch

from cifar_demo import data, weights
from cifar_demo.analysis import evaluate, robustness
from cifar_demo.augment import corrupt
from cifar_demo.reporting import plots
from tests.synthetic_data import make_imagefolder, save_random_weights

MODELS = ("optimized200k", "simple_cnn")   # two of the zoo's quickest forward passes on a CPU
FEW = ["fog", "jpeg"]


def save_random(folder, name: str, seed: int) -> None:
    save_random_weights(folder, [name], seed)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny batches gain nothing from a second thread, and on a shared, busy CPU two threads
    # synchronising on every small op made these tests 4x slower (measured: 6.5 s vs 1.6 s).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    for i, name in enumerate(MODELS):
        save_random(folder, name, i)
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    weights.clear_cache()
    yield folder
    weights.clear_cache()


@pytest.fixture(scope="module")
def split():
    return data.stratified_subset(data.load_sample(), 20)   # 2 test images per class


def targets():
    return robustness.shipped_targets(MODELS)


def run(split, cache, corruptions=FEW, **kw):
    return robustness.compute(targets(), corruptions, split=split, dataset="sample", cache=cache, **kw)


def evaluations(corruptions=FEW, models=len(MODELS)) -> int:
    return models * (1 + 5 * len(corruptions))   # clean once, then five severities each


# ----------------------------------------------------------------------------- the cache

def test_the_second_call_is_served_from_the_cache_without_a_forward_pass(folder, split, tmp_path, monkeypatch):
    calls = []
    first = run(split, tmp_path / "c", progress=lambda done, total: calls.append((done, total)))
    n = evaluations()
    assert first["computed"] == n and calls == [(i, n) for i in range(1, n + 1)]
    assert len(list((tmp_path / "c" / "robustness").glob("*.json"))) == len(MODELS) * (1 + len(FEW))

    forwards = []
    for name in MODELS:
        weights.load(name).model.register_forward_hook(lambda *a: forwards.append(1))
    monkeypatch.setattr(robustness, "load_model", lambda t: pytest.fail(f"loaded {t.name}"))
    second = run(split, tmp_path / "c", progress=lambda *a: pytest.fail("progress on a cache hit"))
    assert second["computed"] == 0 and forwards == []
    assert second["models"] == first["models"]


def test_a_changed_weights_file_misses_and_the_other_model_still_hits(folder, split, tmp_path):
    before = run(split, tmp_path / "c")
    save_random(folder, "simple_cnn", seed=7)   # new bytes, new card sha256
    weights.clear_cache()
    after = run(split, tmp_path / "c")
    assert after["computed"] == evaluations(models=1)
    assert after["models"]["optimized200k"] == before["models"]["optimized200k"]
    assert after["models"]["simple_cnn"]["sha256"] != before["models"]["simple_cnn"]["sha256"]


def test_another_slice_misses(folder, split, tmp_path):
    run(split, tmp_path / "c")
    other = data.subset(split, range(0, 20, 2))
    assert run(other, tmp_path / "c")["computed"] == evaluations()


def test_one_corruption_computes_only_itself_and_is_reused_by_a_larger_request(folder, split, tmp_path):
    assert run(split, tmp_path / "c", ["fog"])["computed"] == evaluations(["fog"])
    both = run(split, tmp_path / "c", ["fog", "jpeg"])
    assert both["computed"] == len(MODELS) * 5   # jpeg's five severities; clean and fog were cached


def test_one_severity_computes_one_pass_per_corruption_and_a_full_request_fills_in_the_rest(folder, split, tmp_path):
    first = run(split, tmp_path / "c", severities=[3])
    assert first["computed"] == len(MODELS) * (1 + len(FEW))    # clean + one pass per corruption
    for m in MODELS:
        for c in FEW:
            curve = first["models"][m]["accuracy"][c]
            assert curve[3] is not None and [curve[s] for s in (1, 2, 4, 5)] == [None] * 4
    assert robustness.missing(first) == len(MODELS) * len(FEW)
    full = run(split, tmp_path / "c")
    assert full["computed"] == len(MODELS) * len(FEW) * 4       # severity 3 and clean came from the cache
    assert robustness.missing(full) == 0
    for m in MODELS:
        for c in FEW:
            assert full["models"][m]["accuracy"][c][3] == first["models"][m]["accuracy"][c][3]
    with pytest.raises(ValueError, match="severities"):
        run(split, tmp_path / "c", severities=[0])


def test_cached_only_computes_nothing_and_marks_what_is_missing(folder, split, tmp_path, monkeypatch):
    run(split, tmp_path / "c", ["fog"])
    monkeypatch.setattr(robustness, "load_model", lambda t: pytest.fail("computed"))
    res = run(split, tmp_path / "c", ["fog", "jpeg"], cached_only=True)
    assert res["computed"] == 0 and robustness.missing(res) == len(MODELS)
    for m in MODELS:
        assert None not in res["models"][m]["accuracy"]["fog"]
        assert res["models"][m]["accuracy"]["jpeg"][1:] == [None] * 5
        assert res["models"][m]["accuracy"]["jpeg"][0] is not None   # the clean entry is shared


def test_an_unreadable_entry_is_recomputed(folder, split, tmp_path):
    run(split, tmp_path / "c", ["fog"])
    entry = next((tmp_path / "c" / "robustness").glob("simple_cnn-*-fog-*.json"))
    entry.write_text('{"accuracy": [0.5, 2.0]}')
    with pytest.warns(UserWarning, match="robustness cache entry"):
        assert run(split, tmp_path / "c", ["fog"])["computed"] == 5
    assert len(json.loads(entry.read_text())["accuracy"]) == 5


def test_an_unknown_corruption_fails_before_any_work(folder, split, tmp_path, monkeypatch):
    monkeypatch.setattr(robustness, "load_model", lambda t: pytest.fail("computed"))
    with pytest.raises(ValueError, match="unknown corruption 'snow'"):
        run(split, tmp_path / "c", ["fog", "snow"])


# ----------------------------------------------------------------------------- what is measured

def test_severity_0_is_a_plain_evaluation_of_the_clean_slice(folder, split, tmp_path):
    res = run(split, tmp_path / "c")
    for name in MODELS:
        model, _ = weights.load_weights(name)
        plain = evaluate.evaluate(model, split).accuracy
        assert all(res["models"][name]["accuracy"][c][0] == plain for c in FEW)


def test_every_model_sees_the_same_seeded_corrupted_images(folder, split, tmp_path, monkeypatch):
    seen = {}
    real = robustness.accuracy

    def spy(model, target, images, labels):
        seen.setdefault(target.name, []).append(images.clone())
        return real(model, target, images, labels)

    monkeypatch.setattr(robustness, "accuracy", spy)
    res = run(split, tmp_path / "c", ["gaussian_noise"])
    a, b = seen["optimized200k"], seen["simple_cnn"]
    assert len(a) == len(b) == 6 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(a[0], split.images)
    for s in range(1, 6):
        assert torch.equal(a[s], corrupt(split.images, "gaussian_noise", s))
    # The accuracies are the ones of those images.
    model, _ = weights.load_weights("simple_cnn")
    at3 = evaluate.evaluate(model, (a[3], split.labels)).accuracy
    assert res["models"]["simple_cnn"]["accuracy"]["gaussian_noise"][3] == at3


def test_results_are_plain_data(folder, split, tmp_path):
    res = run(split, tmp_path / "c")
    assert json.loads(json.dumps(res)) == res
    assert res["corruptions"] == FEW and res["severities"] == [0, 1, 2, 3, 4, 5]
    assert res["slice"] == {"n": 20, "digest": data.split_digest(split), "dataset": "sample", "seed": 0}
    for m in MODELS:
        assert res["models"][m]["sha256"] == weights.card_for(m).sha256
        for curve in res["models"][m]["accuracy"].values():
            assert len(curve) == 6 and all(0 <= a <= 1 for a in curve)


def test_the_default_slice_of_a_source_is_class_balanced(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    root = make_imagefolder(tmp_path / "export", per_class=3)
    sl = robustness.test_slice(root, n=20)
    assert sl.labels.bincount().tolist() == [2] * 10
    assert torch.equal(sl.images, robustness.test_slice(root, n=20).images)   # the same images each time
    res = robustness.compute_shipped(["all"], ["pixelate"], source=root, n=20, cache=tmp_path / "c")
    assert list(res["models"]) == sorted(MODELS) and res["slice"]["dataset"] == "CIFAR-10 (ImageFolder export)"
    assert res["computed"] == evaluations(["pixelate"])


# ----------------------------------------------------------------------------- presenting

def fake_result():
    acc = {"fog": [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], "jpeg": [0.9, 0.88, 0.86, 0.84, 0.82, 0.8]}
    partial = {"fog": [0.5, 0.4, 0.3, 0.2, 0.1, 0.05], "jpeg": [0.5] + [None] * 5}
    return {"models": {"a": {"accuracy": acc}, "b": {"accuracy": partial}}, "corruptions": ["fog", "jpeg"],
            "severities": list(range(6)), "slice": {"n": 1000, "dataset": "CIFAR-10 (JPEG export)"}}


def test_table_by_severity_for_one_corruption():
    text = robustness.format_table(fake_result(), corruption="fog")
    lines = text.splitlines()
    assert lines[0] == ("Accuracy (%) under fog, by severity, on 1,000 class-balanced test images of "
                        "CIFAR-10 (JPEG export)")
    assert lines[1].split() == ["severity", "a", "b"]
    assert lines[3].split() == ["0", "(clean)", "90.0", "50.0"] and lines[-1].split() == ["5", "40.0", "5.0"]
    assert len(lines) == 3 + 6


def test_table_by_corruption_at_one_severity_with_clean_and_mean_rows():
    lines = robustness.format_table(fake_result(), severity=2).splitlines()
    assert "severity 2 of 5" in lines[0]
    assert [row.split() for row in lines[3:]] == [["clean", "90.0", "50.0"], ["fog", "70.0", "30.0"],
                                              ["jpeg", "86.0", "-"], ["mean", "78.0", "-"]]
    md = robustness.format_table(fake_result(), severity=2, fmt="markdown").splitlines()
    assert md[1] == "| corruption | a | b |" and md[2] == "|---|---:|---:|"
    with pytest.raises(ValueError):
        robustness.format_table(fake_result(), severity=0)
    with pytest.raises(ValueError, match="not in this result"):
        robustness.format_table(fake_result(), corruption="pixelate")


def test_the_severity_plot_draws_one_line_per_model_with_values():
    fig = plots.accuracy_vs_severity(robustness.curves(fake_result(), "jpeg"), title="JPEG")
    ax = fig.axes[0]
    lines = [line for line in ax.get_lines() if line.get_label() in ("a", "b")]
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[1].get_xdata()) == [0]   # b's missing severities are skipped, not drawn as 0
    assert ax.get_title() == "JPEG" and ax.get_ylim() == (0, 1)
    empty = plots.accuracy_vs_severity({"a": [None] * 6})
    assert "no accuracies" in empty.axes[0].texts[0].get_text()

