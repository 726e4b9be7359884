"""The app as a whole, built but not served: which events may run side by side, and the mode line."""

from __future__ import annotations

import pytest

from cifar_demo import data, jobs, ui


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return ui.build_app(ui.AppContext.of(jobs.JobManager(tmp_path_factory.mktemp("runs"), dispatch=False)))


def _events(app, name):
    return [fn for fn in app.fns.values() if getattr(fn.fn, "__name__", None) == name]


def test_model_events_share_two_slots_and_whole_test_set_work_one(app):
    assert {(f.concurrency_id, f.concurrency_limit) for f in _events(app, "image_clicked")} == {("models", 2)}
    # /predict and /familiarity wait together in analysis.serve's batcher: a wide lane of their own.
    for name in ("predict_image", "predict_on_page", "familiarity_check", "page_answers"):
        assert {(f.concurrency_id, f.concurrency_limit) for f in _events(app, name)} == {("serve", 64)}, name
    for name in ("evaluate_with_drilldown", "compute_all_for"):
        events = _events(app, name)
        assert events and {(f.concurrency_id, f.concurrency_limit) for f in events} == {("heavy", 1)}, name


def test_ticks_and_page_loads_are_never_stuck_behind_heavy_events(app):
    for name in ("tick", "data_status", "new_token", "refresh_choices"):
        events = _events(app, name)
        assert events, name
        for f in events:
            assert f.concurrency_limit is None and f.concurrency_id not in ui.GROUPS, name


def test_every_limited_group_is_bounded(app):
    # (Events that skip the queue, as gr.Examples' loading does, have no lane to be in.)
    limited = {f.concurrency_id for f in app.fns.values() if f.queue and f.concurrency_limit is not None}
    assert limited <= set(ui.GROUPS) and all(ui.GROUPS[g] >= 1 for g in limited)


def context(tmp_path, public=False) -> ui.AppContext:
    return ui.AppContext.of(jobs.JobManager(tmp_path / "runs", public=public, dispatch=False))


def test_the_page_says_which_mode_it_is_in(tmp_path):
    assert "Local mode" in ui.common.mode_html(context(tmp_path))
    text = ui.common.mode_html(context(tmp_path, public=True))
    assert "Public mode" in text and "210,000 images per run" in text and "deleted" in text


def test_public_mode_is_on_for_a_space_or_when_asked(monkeypatch):
    for var in ("SPACE_ID", "CIFAR_DEMO_PUBLIC"):
        monkeypatch.delenv(var, raising=False)
    assert not jobs.public_mode()
    monkeypatch.setenv("SPACE_ID", "teacher/cifar-demo")
    assert jobs.public_mode()
    monkeypatch.setenv("CIFAR_DEMO_PUBLIC", "0")
    assert not jobs.public_mode()   # a Space owner may turn it off explicitly
    monkeypatch.delenv("SPACE_ID")
    monkeypatch.setenv("CIFAR_DEMO_PUBLIC", "1")
    assert jobs.public_mode()


def test_the_context_is_made_from_the_flag_or_the_environment(monkeypatch, tmp_path):
    for var in ("SPACE_ID", "CIFAR_DEMO_PUBLIC", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    assert not ui.AppContext.from_env(runs_dir=tmp_path).public
    ctx = ui.AppContext.from_env(public=True, runs_dir=tmp_path)   # app.py --public
    assert ctx.public and ctx.manager.public and ctx.hub_repo is None
    assert ctx.data_limits is data.PUBLIC_LIMITS
    monkeypatch.setenv("SPACE_ID", "teacher/cifar-demo")
    assert ui.AppContext.from_env(runs_dir=tmp_path).public
    with pytest.raises(ValueError, match="the job manager is local"):
        ui.AppContext(jobs.JobManager(tmp_path, dispatch=False), public=True)


def test_a_visitor_token_is_kept_and_its_owner_is_a_hash(tmp_path):
    ctx = context(tmp_path, public=True)
    token = ui.common.new_token(None)
    assert len(token) >= 32 and ui.common.new_token(token) == token and ui.common.new_token("short") != "short"
    owner = ui.common.owner_of(ctx, token)
    assert owner.isalnum() and token not in owner and ui.common.owner_of(ctx, None) is None
    assert ui.common.owner_of(ctx, ui.common.new_token(None)) != owner
    assert ui.common.owner_of(context(tmp_path), None) == jobs.LOCAL


def test_app_py_takes_data_dir_as_the_no_data_panel_says(monkeypatch, tmp_path):
    """`python app.py --data DIR` (the no-data panel's advice) means CIFAR_DEMO_DATA=DIR."""
    import app as app_py  # the repository's app.py

    monkeypatch.delenv("CIFAR_DEMO_DATA", raising=False)
    launched = []
    monkeypatch.setattr(ui, "build_app", lambda ctx: "blocks")
    monkeypatch.setattr(ui, "launch", lambda blocks, ctx, **kw: launched.append(kw))
    app_py.main(["--data", str(tmp_path), "--port", "7999"])
    assert launched == [{"host": "127.0.0.1", "port": 7999, "share": False}]
    assert data.sources.os.environ["CIFAR_DEMO_DATA"] == str(tmp_path)
    assert "--data DIR" in data.sources._no_source_message(None, "x")   # the advice it follows


def test_error_pop_ups_show_the_whole_message_as_text():
    """Gradio reads an error's message as HTML: "<class>" was a tag, and the pop-up ended there."""
    import gradio as gr
    from gradio import queueing, utils

    ui.gradio_fixes.apply()
    message = "an ImageFolder export: DIR/train/<class>/<image> & more\nsecond line"
    for payload in (queueing.error_payload, utils.error_payload):
        shown = payload(gr.Error(message), False)["error"]
        assert shown == "an ImageFolder export: DIR/train/&lt;class&gt;/&lt;image&gt; &amp; more<br>second line"


def test_on_zerogpu_gradios_queue_takes_many_pages_loading_at_once(app, monkeypatch):
    """On ZeroGPU Gradio caps its queue at one waiting event unless it is told a size: every load event
    of a page but the first was refused (503), and no visitor ever got a token."""
    loads = [d for d in app.get_config_file()["dependencies"] if any(t[1] == "load" for t in d["targets"])]
    assert len(loads) > 1
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    ui.configure_queue(app)
    assert app._queue.max_size >= 10 * len(loads)   # ten visitors opening the page together
    monkeypatch.delenv("SPACES_ZERO_GPU")
    ui.configure_queue(app)
    assert app._queue.max_size is None   # elsewhere Gradio's default: no cap
