"""Nothing a visitor causes outlives the visitor (public mode): the decoded pixels of its uploads
live in its folder, the app's Gradio cache is deleted on the retention rule, a run's download is
built once and kept with the run, and a global cap on visitors' disk evicts whole folders,
oldest first, never one with a run queued or going. Handlers are called directly (no browser)."""

from __future__ import annotations

import datetime
import os
import shutil
import time
from pathlib import Path

import pytest

from cifar_demo import data, jobs
from cifar_demo.ui import AppContext, own_data
from cifar_demo.ui.common import owner_of

from .helpers import cfg, write_imagefolder
from .own_images import make_own_folder, zip_folder

ALICE, BOB, CAROL = "a" * 43, "b" * 43, "c" * 43


def disk(*roots: Path) -> dict[str, int]:
    """{path: size} of every file under `roots`."""
    return {str(p): p.stat().st_size for r in roots if r.exists() for p in r.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    """Three small accepted zips of 3 classes, and one refused after decoding (too few readable pictures)."""
    root = tmp_path_factory.mktemp("retain")
    good = [zip_folder(make_own_folder(root / f"set{i}", per_class=5, test_per_class=1, seed=i), root / f"set{i}.zip")
            for i in range(4)]
    bad = zip_folder(make_own_folder(root / "bad", per_class=4, test_per_class=1, broken=2), root / "bad.zip")
    return good, bad


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The directory of a finished one-epoch run of the cheapest zoo model on a tiny ImageFolder."""
    from cifar_demo.train import Trainer

    root = tmp_path_factory.mktemp("run")
    folder = write_imagefolder(root / "data", n_train=10, n_test=2)
    trainer = Trainer(cfg(model="optimized200k", data=str(folder), val_size=20), runs_dir=root / "runs")
    trainer.run()
    return trainer.run_dir


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("CIFAR_DEMO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.setenv("CIFAR_DEMO_PUBLIC", "1")
    return tmp_path


def put(env: Path, src: Path) -> str:
    """A file as Gradio's upload folder holds it: <temp>/<hash>/<name>."""
    dest = env / "gradio" / f"u{len(list((env / 'gradio').glob('*'))) if (env / 'gradio').exists() else 0}" / src.name
    dest.parent.mkdir(parents=True)
    return str(shutil.copyfile(src, dest))


def test_a_visitors_decoded_pixels_live_in_its_folder_and_go_with_it(env, zips):
    good, bad = zips
    ctx = AppContext.of(jobs.JobManager(public=True, dispatch=False, retention_s=3600))
    folder = ctx.runs_dir_for(owner_of(ctx, ALICE))
    for z in good:   # the 4th upload evicts the 1st (MAX_DATASETS_PUBLIC), its pixels too
        own_data.add_upload(ctx, put(env, z), ALICE)
    with pytest.raises(data.DataSourceError):
        own_data.add_upload(ctx, put(env, bad), ALICE)
    assert disk(env / "cache") == {}, "nothing decoded outside the visitor's folder"
    decoded = sorted(p.name for p in (folder / own_data.DATASETS / data.OWN_CACHE).rglob("*.npz"))
    assert len(decoded) == 2 * own_data.MAX_DATASETS_PUBLIC, decoded   # train + test of each zip kept, no more
    # A training child (another process, no app context) finds them there too: decoded from the cache.
    kept = own_data.dataset_files(ctx, owner_of(ctx, ALICE))[0]
    assert len(data.load_dataset(kept, val_size=0).train) > 0
    assert sorted(p.name for p in (folder / own_data.DATASETS / data.OWN_CACHE).rglob("*.npz")) == decoded
    # The folder goes RETENTION_S after it was last written to: nothing of the visitor remains.
    ctx.manager.cleanup(now=time.time() + 3601)
    assert not folder.exists() and disk(env / "cache", env / "runs") == {}


def test_locally_the_decode_cache_stays_where_it_was(env, zips, monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_PUBLIC")
    ctx = AppContext.of(jobs.JobManager(dispatch=False))
    own_data.add_upload(ctx, put(env, zips[0][0]))
    assert len(list((env / "cache" / "decoded").glob("*.npz"))) == 2
    assert not (ctx.runs_dir_for(jobs.LOCAL) / own_data.DATASETS / data.OWN_CACHE).exists()


def test_in_public_mode_gradio_deletes_the_apps_cache_on_the_retention_rule(env, monkeypatch):
    from gradio import route_utils

    from cifar_demo import ui

    app = ui.build_app(AppContext.of(jobs.JobManager(public=True, dispatch=False)))
    assert app.delete_cache == (ui.CACHE_SWEEP_S, jobs.RETENTION_S) and ui.CACHE_SWEEP_S <= jobs.RETENTION_S
    # What Gradio's sweep (every CACHE_SWEEP_S) does with it: an upload stays until it is RETENTION_S old.
    upload = Path(put(env, Path(__file__)))
    app.upload_file_set.add(str(upload))
    route_utils.delete_files_created_by_app(app, app.delete_cache[1])
    assert upload.exists()
    monkeypatch.setattr(route_utils, "datetime", _Later)
    route_utils.delete_files_created_by_app(app, app.delete_cache[1])
    assert not upload.exists()
    monkeypatch.delenv("CIFAR_DEMO_PUBLIC")
    assert ui.build_app(AppContext.of(jobs.JobManager(dispatch=False))).delete_cache is None   # locally: kept


class _Later(datetime.datetime):
    """route_utils' clock, RETENTION_S + 1 seconds on."""

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.now(tz) + datetime.timedelta(seconds=jobs.RETENTION_S + 1)


def test_a_runs_download_is_built_once_and_kept_with_the_run(env, finished, monkeypatch):
    from cifar_demo.reporting import export
    from cifar_demo.ui import train_runs

    monkeypatch.setattr(export.tempfile, "tempdir", str(env / "tmp"))   # where a temporary folder would go
    (env / "tmp").mkdir()
    ctx = AppContext.of(jobs.JobManager(public=True, dispatch=False))
    folder = ctx.runs_dir_for(owner_of(ctx, ALICE))
    run_dir = Path(shutil.copytree(finished, folder / finished.name))
    scored = []
    real = export.export_run
    monkeypatch.setattr(export, "export_run", lambda *a, **kw: scored.append(a) or real(*a, **kw))
    first = train_runs.download_weights(ctx, run_dir.name, ALICE)["value"]
    again = train_runs.download_weights(ctx, run_dir.name, ALICE)["value"]
    assert first == again and len(scored) == 1, "a second click serves the same file, without scoring again"
    assert Path(first).is_relative_to(run_dir) and Path(first).is_file()
    assert disk(env / "tmp") == {} and not list((env / "tmp").iterdir()), "nothing left in a temporary folder"
    # Weights that change (a resumed run trained on) get a new download, and the old one goes.
    real_digest = (run_dir / "best.sha256").read_text().split()[0]   # a save in progress: new, then old digest
    (run_dir / "best.sha256").write_text("0" * 64 + "\n" + real_digest + "\n")
    third = export.run_download(run_dir)
    assert third != first and not Path(first).exists() and len(scored) == 2


class _Queued:
    pid, code = 99_999_999, None

    def poll(self):
        return self.code

    def send_signal(self, sig):
        self.code = 0


def test_a_burst_of_visitors_is_capped_evicted_oldest_first_and_leaves_nothing(env, zips, finished, monkeypatch):
    import gradio as gr
    from gradio import route_utils

    from cifar_demo import ui
    from cifar_demo.train import Run, TrainConfig
    from cifar_demo.ui import train_runs

    m = jobs.JobManager(public=True, dispatch=False, spawn=lambda cmd, log: _Queued())
    ctx = AppContext.of(m)
    roots = (env / "runs", env / "cache", env / "gradio")
    # The shared dataset the runs trained on (CIFAR-10 on a Space) is decoded before any visitor comes.
    data.load_split("test", data.resolve_source(Run(finished).config().data, download=False))
    before = disk(*roots)
    cache = gr.Blocks(delete_cache=ui.delete_cache(ctx))    # the app's Gradio cache, as build_app sets it
    (good, bad), owners = zips, {}
    for token in (ALICE, BOB, CAROL):
        owner = owners[token] = owner_of(ctx, token)
        for z in [*good[:2], bad]:
            path = put(env, z)
            cache.upload_file_set.add(path)
            try:
                own_data.add_upload(ctx, path, token)
            except data.DataSourceError:
                pass
        if token != CAROL:
            shutil.copytree(finished, ctx.runs_dir_for(owner) / finished.name)
            for _ in range(2):
                train_runs.download_weights(ctx, finished.name, token)
    m.submit(TrainConfig(model="simple_cnn", epochs=1, train_limit=1000, val_size=100, test_limit=100,
                         batch_size=50), owners[CAROL])   # Carol's run starts (a stand-in child)
    m.poll()
    burst = disk(*roots)
    assert sum(burst.values()) > sum(before.values()) and disk(env / "cache") == disk(env / "cache") | {
        p: n for p, n in before.items() if p.startswith(str(env / "cache"))}, "no visitor's pixels in the cache"
    assert {p for p in disk(env / "cache")} == {p for p in before if p.startswith(str(env / "cache"))}
    for age, token in ((300, ALICE), (200, BOB), (900, CAROL)):   # Carol is oldest, but her run is going
        for p in [ctx.runs_dir_for(owners[token]), *Path(ctx.runs_dir_for(owners[token])).rglob("*")]:
            os.utime(p, (time.time() - age,) * 2)
    sizes = {t: sum(disk(Path(ctx.runs_dir_for(o))).values()) for t, o in owners.items()}
    m.disk_cap = sum(sizes.values()) - 1
    assert m.cleanup() == [owners[ALICE]]           # over the cap: the least recently used goes, whole
    m.disk_cap = 0
    assert m.cleanup() == [owners[BOB]]             # and the next; never a visitor with a run queued or going
    assert Path(ctx.runs_dir_for(owners[CAROL])).is_dir()
    # Carol stops her run; 6 hours on, her folder and Gradio's copies of every upload go too.
    m.disk_cap = jobs.records.VISITORS_DISK_CAP
    assert m.stop(owners[CAROL])
    m.poll()
    assert m.cleanup(now=time.time() + jobs.RETENTION_S + 1) == [owners[CAROL]]
    monkeypatch.setattr(route_utils, "datetime", _Later)
    route_utils.delete_files_created_by_app(cache, cache.delete_cache[1])
    after = disk(*roots)
    assert after == before, sorted(set(after) - set(before))
