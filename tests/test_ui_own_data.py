"""Your own images in the app, handlers called directly (no browser): a zip uploaded in the Train
tab is checked, kept with its owner and described; Start trains on it; the Evaluate tab shows its
class names, the Predict tab asks the run, the Augmentations tab previews its pictures; in
public mode a visitor's uploads are its own."""

from __future__ import annotations

import shutil

import gradio as gr
import pytest

from cifar_demo import data, jobs, train
from cifar_demo.ui import AppContext, augment_tab, evaluate_tab, own_data, predict_tab, train_tab
from cifar_demo.ui.common import owner_of

from .helpers import MODEL
from .own_images import make_own_folder, picture, zip_folder

CLASSES3 = ("coin", "leaf", "shell")   # tests/own_images.py's first three names, as sorted folders


@pytest.fixture(scope="module")
def trinkets(tmp_path_factory):
    """A zip of 3 classes of new names (12 training and 4 test pictures each), wrapped in a top folder."""
    root = tmp_path_factory.mktemp("own")
    make_own_folder(root / "trinkets", per_class=12, test_per_class=4, broken=1)
    return zip_folder(root / "trinkets", root / "trinkets.zip", wrap=True)


@pytest.fixture()
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-upload"))   # what data.uploads accepts
    monkeypatch.delenv("CIFAR_DEMO_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    yield tmp_path


@pytest.fixture()
def ctx(app_env):
    """The app's context around a fresh (local) job manager that sees app_env's folders."""
    manager = jobs.JobManager()
    yield AppContext.of(manager)
    if manager.stop():
        manager.wait(timeout=120)


def upload_copy(zip_path, tmp_path, name="trinkets.zip"):
    """What Gradio hands the handler: a copy in its own upload folder (deleted after a while)."""
    dest = tmp_path / "gradio-upload" / name
    dest.parent.mkdir(exist_ok=True)
    return str(shutil.copyfile(zip_path, dest))


def test_an_upload_is_kept_described_and_offered_and_the_preset_turns_to_finetune(app_env, trinkets, ctx):
    dropdown, text, preset, *values = train_tab.on_upload(ctx, "airnet", "demo", upload_copy(trinkets, app_env))
    kept = app_env / "runs" / own_data.DATASETS / "trinkets.zip"
    assert kept.read_bytes() == trinkets.read_bytes()
    assert dropdown.value == "own:trinkets.zip" and ("trinkets (your images)", "own:trinkets.zip") in dropdown.choices
    assert "3 classes (`coin`, `leaf`, `shell`)" in text and "36 training and 12 test images" in text
    assert "Skipped 1 file" in text and "zz_broken_0.jpg" in text
    assert preset.value == "finetune" and dict(zip(train_tab.FIELDS, values))["epochs"] == \
        train.make_config("finetune").epochs
    # The same zip again is the same dataset, not a second copy; back to CIFAR-10, back to the default preset.
    train_tab.on_upload(ctx, "airnet", "finetune", upload_copy(trinkets, app_env))
    assert [p.name for p in own_data.dataset_files(ctx, jobs.LOCAL)] == ["trinkets.zip"]
    text, preset, *_ = train_tab.on_dataset(ctx, "airnet", "finetune", own_data.CIFAR)
    assert text == "" and preset.value == "demo"
    # A model without a fine-tuning preset (the Overfitting pick's simple_cnn) keeps its recipe, and
    # the text says it learns from scratch and how to fine-tune instead (a lesson walk hit this).
    text, preset, *_ = train_tab.on_dataset(ctx, "simple_cnn", "overfit", "own:trinkets.zip")
    assert preset == gr.skip()   # the pick's preset stays
    assert "`simple_cnn` has no fine-tuning preset" in text and "pick the model `airnet`" in text
    assert "fine-tuning preset" not in train_tab.on_dataset(ctx, "airnet", "demo", "own:trinkets.zip")[0]


def test_a_few_pictures_get_a_batch_size_they_fill(app_env, tmp_path, ctx):
    few = zip_folder(make_own_folder(tmp_path / "few", per_class=7, test_per_class=2), tmp_path / "few.zip")
    _, text, preset, *values = train_tab.on_upload(ctx, "airnet", "demo", upload_copy(few, app_env, "few.zip"))
    form = dict(zip(train_tab.FIELDS, values))
    n_train = len(own_data.load(ctx, "own:few.zip", None, val_size=train.make_config("finetune").val_size).train)
    assert n_train < train.make_config("finetune").batch_size == 32
    assert form["batch_size"] == train_tab.fitting_batch(32, n_train) == 8   # 21 pictures less the val split
    assert f"Batch size set to 8: the {n_train} training pictures" in text
    cfg = train_tab.config_from_form("airnet", preset.value, *values)   # and the form is a valid run
    assert cfg.batch_size == 8
    assert [train_tab.fitting_batch(32, n) for n in (40, 32, 31, 16, 3, 1)] == [32, 32, 8, 8, 1, 1]


def test_a_late_refresh_keeps_the_dataset_the_page_shows(app_env, trinkets, ctx):
    train_tab.on_upload(ctx, "airnet", "demo", upload_copy(trinkets, app_env))
    # The page-load refresh was sent with CIFAR-10 and may answer after the upload: choices only.
    late = own_data.refresh(ctx, own_data.CIFAR)
    assert "value" not in late.constructor_args and ("trinkets (your images)", "own:trinkets.zip") in late.choices
    assert own_data.refresh(ctx, "own:gone.zip").value == own_data.CIFAR   # a dataset that is gone


def test_a_refused_zip_says_why_and_is_not_kept(app_env, tmp_path, ctx):
    one = make_own_folder(tmp_path / "one", classes=("leaf",), per_class=6)
    with pytest.raises(gr.Error, match="2 to 100 classes"):
        own_data.on_upload(ctx, upload_copy(zip_folder(one, tmp_path / "one.zip"), app_env, "one.zip"))
    (tmp_path / "notes.txt").write_text("not a zip")
    with pytest.raises(gr.Error, match="not a .zip"):
        own_data.on_upload(ctx, upload_copy(tmp_path / "notes.txt", app_env, "notes.txt"))
    # Any other path is not an upload of this page, whether it exists or not.
    outside = str(zip_folder(one, tmp_path / "o.zip"))
    for path in (str(tmp_path / "notes.txt"), str(tmp_path / "missing.zip"), {"path": outside}):
        with pytest.raises(gr.Error, match="not a file uploaded to this page"):
            own_data.on_upload(ctx, path)
    assert own_data.dataset_files(ctx, jobs.LOCAL) == []
    with pytest.raises(ValueError, match="not a dataset of yours"):
        own_data.path_of(ctx, "own:../../etc/passwd.zip")


def test_start_trains_on_the_upload_and_every_tab_uses_its_class_names(app_env, trinkets, ctx):
    own_data.add_upload(ctx, upload_copy(trinkets, app_env))
    form = dict(zip(train_tab.FIELDS, train_tab.on_preset(MODEL, MODEL)))
    form.update(epochs=1, batch_size=12, augment="standard", precision="fp32", val_size=5000, train_limit=0)
    message = train_tab.start(ctx, MODEL, MODEL, *[form[f] for f in train_tab.FIELDS], "own:trinkets.zip")
    assert "on trinkets (own images)" in message
    manager = ctx.manager
    assert manager.wait(timeout=300) == 0, manager.snapshot().log_tail
    run = train.list_runs(manager.runs_dir)[0]
    assert run["summary"]["status"] == "finished" and run["summary"]["classes"] == list(CLASSES3)
    run_id = run["run_id"]

    # Evaluate: its test images, its classes in the tables, the dropdowns and the drill-down.
    out = evaluate_tab.evaluate_with_drilldown(ctx, f"run:{run_id}", "none")
    summary, table, true_cls = out[0], out[4], out[9]
    assert "12 test images of trinkets (own images)" in summary
    assert [row[0] for row in table[:-1]] == list(CLASSES3)
    assert true_cls.choices == [(c, c) for c in CLASSES3]
    page, heading, items, *_ = evaluate_tab.show_cell(out[7], "leaf", "leaf", 1)
    assert "leafs it gets right" in heading or "none" in heading
    compare = evaluate_tab.comparison(out[7], 0)
    assert "airplane" not in compare and any(c in compare for c in CLASSES3)   # no CIFAR-10 models beside it

    # Predict: the run answers with its own classes, beside the zoo.
    assert any(v == run_id and label.endswith(f"run {run_id} (coin, leaf, shell)")
               for label, v in predict_tab.run_choices(ctx))
    photo = app_env / "gradio-upload" / "photo.png"
    picture(1, 5).save(photo)
    probs, line = predict_tab.predict_run(ctx, str(photo), run_id)
    assert set(probs) == set(CLASSES3) and sum(probs.values()) == pytest.approx(1) and "coin, leaf, shell" in line
    assert predict_tab.predict_run(ctx, str(photo), predict_tab.NO_RUN) == (None, "")

    # Augmentations: a few of each class, and a click picks one.
    gallery = augment_tab.show_source(ctx, "own:trinkets.zip")
    captions = [item["caption"] for item in gallery.value]
    assert {c.split()[0] for c in captions} == set(CLASSES3)
    first = gr.SelectData(None, {"index": 0, "value": None})
    image, view, caption = augment_tab.choose_from_source(ctx, "own:trinkets.zip", first)
    assert image.shape == (32, 32, 3) and captions[0].split()[0] in caption


def test_in_public_mode_a_visitors_uploads_are_its_own(app_env, trinkets, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_PUBLIC", "1")   # the data layer's default caps follow the mode too
    ctx = AppContext.of(jobs.JobManager(public=True, dispatch=False))
    assert ctx.data_limits == data.PUBLIC_LIMITS
    alice, bob = "a" * 43, "b" * 43
    own_data.add_upload(ctx, upload_copy(trinkets, app_env), alice)
    folder = ctx.manager.runs_dir_for(owner_of(ctx, alice)) / own_data.DATASETS
    assert (folder / "trinkets.zip").is_file()
    assert [v for _, v in own_data.choices(ctx, alice)] == [own_data.CIFAR, "own:trinkets.zip"]
    assert [v for _, v in own_data.choices(ctx, bob)] == [own_data.CIFAR]
    with pytest.raises(ValueError, match="is gone"):
        own_data.path_of(ctx, "own:trinkets.zip", bob)
    assert data.default_limits() == data.PUBLIC_LIMITS
