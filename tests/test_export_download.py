"""export_download: a finished run as one .zip (weights + card) made by export_run's code in a
temporary folder; weights/ is never written, and the zip loads back to the run's best weights."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch

from cifar_demo import weights, zoo
from cifar_demo.reporting import export
from cifar_demo.train import Run, Trainer

from .helpers import CARD_FIELDS, Tiny, cfg, flip_last_byte, save_tiny, write_imagefolder

# The zoo model cheapest to score (8 M MACs): export scores the test split three times.
MODEL = "optimized200k"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(runs_dir, run_id) of one real, finished one-epoch run on a tiny ImageFolder export."""
    root = tmp_path_factory.mktemp("download")
    folder = write_imagefolder(root / "data", n_train=10, n_test=2)
    trainer = Trainer(cfg(model=MODEL, data=str(folder), val_size=20), runs_dir=root / "runs")
    trainer.run()
    return root / "runs", trainer.run_dir.name


@pytest.fixture()
def no_weights_dir(tmp_path, monkeypatch):
    """weights_dir() points at a folder that must still not exist after the test."""
    target = tmp_path / "weights"
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(target))
    return target


def test_download_is_one_zip_of_the_exported_pair_and_writes_nothing_under_weights(
        finished_run, no_weights_dir, tmp_path, monkeypatch):
    runs_dir, run_id = finished_run
    # Every temp folder lands here, so a staging folder left behind would show.
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp_root))
    exports = []

    def spy(*args, **kw):  # the real export, watched: the download is its output, not a copy of its code
        out = real_export(*args, **kw)
        exports.append((kw["out_dir"], out))
        return out

    real_export = export.export_run
    monkeypatch.setattr(export, "export_run", spy)

    path = export.export_download(run_id, runs_dir=runs_dir)
    assert path.name == f"{MODEL}.zip" and path.is_relative_to(temp_root)
    assert list(temp_root.iterdir()) == [path.parent]          # the staging folder is gone
    assert list(path.parent.iterdir()) == [path]
    assert not no_weights_dir.exists()
    [(out_dir, (_, _, exported))] = exports
    assert out_dir.is_relative_to(temp_root) and not out_dir.exists()

    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == [f"{MODEL}.json", f"{MODEL}.safetensors"]
        card = json.loads(zf.read(f"{MODEL}.json"))
    assert card == exported.to_dict()
    assert card["model"] == MODEL and card["train_config"]["val_size"] == 20
    assert card["slice_check"]["n"] == 20  # the whole (20-image) test split was scored

    model, loaded = weights.load_weights_file(path)
    best = weights.load(weights.ModelRef.run(Run.find(run_id, runs_dir).dir)).model
    assert loaded.sha256 == card["sha256"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best.state_dict().items())
    assert not no_weights_dir.exists()


def test_a_given_folder_name_and_export_options_reach_export_run(finished_run, no_weights_dir, tmp_path,
                                                               monkeypatch):
    runs_dir, run_id = finished_run
    calls = []

    def quick_export(run, *, runs_dir, out_dir, dtype, data, device):
        # Stands in for the scoring (the test above runs the real one): a real pair, written
        # where export_download asked.
        calls.append(dict(run=run, runs_dir=runs_dir, dtype=dtype, data=data, device=device))
        w, c = weights.save_weights(zoo.create(MODEL), out_dir, MODEL, dtype=dtype, **CARD_FIELDS)
        return w, c, weights.ModelCard.load(c)

    monkeypatch.setattr(export, "export_run", quick_export)
    path = export.export_download(run_id, runs_dir=runs_dir, dest=tmp_path / "out", name="my-run.1",
                                  dtype="float16", data="DATA", device="cpu")
    assert calls == [dict(run=run_id, runs_dir=runs_dir, dtype="float16", data="DATA", device="cpu")]
    assert path == tmp_path / "out" / "my-run.1.zip" and list(path.parent.iterdir()) == [path]
    with zipfile.ZipFile(path) as zf:
        # Inside, the model's own name: what weights/, verify() and the Hub look for.
        assert sorted(zf.namelist()) == [f"{MODEL}.json", f"{MODEL}.safetensors"]
    assert weights.load_weights_file(path)[1].dtype == "float16"
    assert not no_weights_dir.exists()


def test_unfinished_runs_and_unsafe_names_are_refused_and_leave_no_zip(finished_run, tmp_path):
    runs_dir, run_id = finished_run
    with pytest.raises(weights.WeightsError, match="not a valid model name"):
        export.export_download(run_id, runs_dir=runs_dir, dest=tmp_path / "a", name="../escape")
    unfinished = Run(runs_dir / "unfinished")
    unfinished.dir.mkdir()
    unfinished.config_path.write_text(Run.find(run_id, runs_dir).config_path.read_text())
    (tmp_path / "b").mkdir()
    with pytest.raises(FileNotFoundError, match="has not finished"):
        export.export_download("unfinished", runs_dir=runs_dir, dest=tmp_path / "b")
    assert not (tmp_path / "a").exists() and list((tmp_path / "b").iterdir()) == []


# ---------------------------------------------------------------------------- reading a download back
# Small hand-made modules (tests/helpers.py's Tiny) stand in for the zoo: `create` builds them.


def tiny_zip(tmp_path, **kw):
    model, w, c = save_tiny(tmp_path / "pair", **kw)
    return model, weights.write_weights_zip(w, c, tmp_path / "dl.zip")


def load_tiny(path):
    return weights.load_weights_file(path, create=lambda name: Tiny())


def raw_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_zip_or_a_pair_on_disk_loads_exactly(tmp_path):
    model, path = tiny_zip(tmp_path)
    for source in (path, tmp_path / "pair" / "tiny.safetensors", tmp_path / "pair" / "tiny.json"):
        loaded, card = load_tiny(source)
        assert card.model == "tiny" and not loaded.training
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    # A renamed pair still loads (the card says which architecture); a lone file does not.
    for suffix in (".safetensors", ".json"):
        (tmp_path / "pair" / f"tiny{suffix}").rename(tmp_path / f"mine{suffix}")
    assert load_tiny(tmp_path / "mine.safetensors")[1].model == "tiny"
    (tmp_path / "mine.json").unlink()
    with pytest.raises(weights.WeightsError, match="needs its model card beside it"):
        load_tiny(tmp_path / "mine.safetensors")
    with pytest.raises(weights.WeightsError, match="no such file"):
        load_tiny(tmp_path / "nothing.zip")
    (tmp_path / "model.pt").write_bytes(b"pickle")
    with pytest.raises(weights.WeightsError, match=r"give a \.zip"):
        load_tiny(tmp_path / "model.pt")


def test_a_tampered_zip_is_refused_by_its_card_naming_the_zip(tmp_path):
    _, w, c = save_tiny(tmp_path / "pair")
    flip_last_byte(w)
    path = weights.write_weights_zip(w, c, tmp_path / "dl.zip")
    with pytest.raises(weights.WeightsError, match="sha256 mismatch") as e:
        load_tiny(path)
    assert str(e.value).startswith(f"{path}: ") and "cifar-demo-zip-" not in str(e.value)
    # The same checks as verify(): a card whose values are wrong is refused even if the hash fits.
    _, w, c = save_tiny(tmp_path / "pair2")
    card = json.loads(c.read_text())
    c.write_text(json.dumps({**card, "params": card["params"] + 1}))
    with pytest.raises(weights.WeightsError, match="params: card says"):
        load_tiny(weights.write_weights_zip(w, c, tmp_path / "dl2.zip"))


@pytest.mark.parametrize("members, message", [
    ({"tiny.safetensors": b"x"}, "holds 1 entries"),
    ({"tiny.safetensors": b"x", "tiny.json": b"{}", "extra.txt": b""}, "holds 3 entries"),
    ({"tiny.safetensors": b"x", "../tiny.json": b"{}"}, "unexpected entry '../tiny.json'"),
    ({"tiny.safetensors": b"x", "/etc/tiny.json": b"{}"}, "unexpected entry '/etc/tiny.json'"),
    ({"tiny.safetensors": b"x", "sub/tiny.json": b"{}"}, "no folders"),
    ({"tiny.safetensors": b"x", "tiny.pt": b"{}"}, "unexpected entry 'tiny.pt'"),
    ({"tiny.safetensors": b"x", "other.json": b"{}"}, "holds 'tiny.safetensors', 'other.json'"),
    ({"a.safetensors": b"x", "b.safetensors": b"y"}, "holds 'a.safetensors', 'b.safetensors'"),
])
def test_unexpected_members_are_refused_and_nothing_is_extracted(tmp_path, members, message):
    work = tmp_path / "work"
    work.mkdir()
    path = raw_zip(work / "bad.zip", members)
    with pytest.raises(weights.WeightsError, match="weights zip holds exactly|unexpected entry") as e:
        load_tiny(path)
    assert message in str(e.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.zip", "work"]


def test_links_oversized_members_damaged_and_non_zips_are_refused(tmp_path, monkeypatch):
    _, w, c = save_tiny(tmp_path / "pair")
    link = zipfile.ZipInfo("tiny.json")
    link.external_attr = (0o120777 << 16)  # a symlink entry, as `zip --symlinks` writes it
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.write(w, "tiny.safetensors")
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(weights.WeightsError, match="is a link or encrypted"):
        load_tiny(tmp_path / "link.zip")

    path = weights.write_weights_zip(w, c, tmp_path / "dl.zip")
    monkeypatch.setattr(weights.store, "ZIP_MAX_CARD_BYTES", 100)
    with pytest.raises(weights.WeightsError, match=r"tiny.json is [\d,]+ bytes, more than 100$"):
        load_tiny(path)
    monkeypatch.undo()

    data = bytearray(path.read_bytes())
    offset = data.index(b"tiny.safetensors") + len("tiny.safetensors") + 200  # inside the stored tensors
    data[offset] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match="not a readable weights zip: Bad CRC"):
        load_tiny(tmp_path / "damaged.zip")

    (tmp_path / "not.zip").write_bytes(b"PK\x03\x04 but not really a zip")
    with pytest.raises(weights.WeightsError, match="not a readable weights zip"):
        load_tiny(tmp_path / "not.zip")
