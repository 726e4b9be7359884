"""The job queue without a browser or a real training: a fake child process and a fake clock.

What is checked is jobs.JobManager's policy: first come first served, one queued-or-running
run per owner, a capped queue, only the owner stops its run, public bounds (images at submit,
wall-clock while running), per-visitor folders and their cleanup, and re-attaching after a
restart from the records in runs/.jobs/.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from cifar_demo import jobs
from cifar_demo.train import Run, TrainConfig


class FakeChild:
    """Stands in for the training child: ends when told to, or on SIGTERM (as a run that checkpoints)."""

    pids = iter(range(10_000_000, 20_000_000))

    def __init__(self, cmd):
        self.cmd, self.pid, self.code, self.signals = cmd, next(self.pids), None, []

    def poll(self):
        return self.code

    def wait(self, timeout=None):
        return self.code

    def send_signal(self, sig):
        self.signals.append(sig)
        self.code = 0


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def env(tmp_path):
    children: list[FakeChild] = []

    def spawn(cmd, log_path):
        assert log_path.parent.is_dir()
        children.append(FakeChild(cmd))
        return children[-1]

    clock = Clock()

    def make(public=True, **kw):
        kw.setdefault("bounds", jobs.Bounds(max_images=10_000, max_seconds=600) if public else None)
        return jobs.JobManager(tmp_path / "runs", public=public, spawn=spawn, clock=clock, dispatch=False, **kw)

    return make, children, clock


def cfg(**kw):
    kw = {"model": "simple_cnn", "epochs": 1, "train_limit": 1000, "val_size": 100, "test_limit": 100, "batch_size": 50,
          **kw}
    return TrainConfig(**kw)


def submit(m, owner, clock, **kw):
    clock.now += 1   # distinct submit times: the queue is ordered by them
    return m.submit(cfg(**kw), owner)


def test_first_come_first_served_and_the_next_run_starts_by_itself(env):
    make, children, clock = env
    m = make()
    a = submit(m, "alice", clock)
    b = submit(m, "bob", clock)
    c = submit(m, "carol", clock)
    assert len(children) == 1 and a in " ".join(children[0].cmd)
    view_b = m.view("bob")
    assert view_b.snap.run_id == a and not view_b.mine and view_b.position == 1 and view_b.can_stop
    assert m.view("carol").position == 2 and m.view("carol").queued == 2
    assert m.view("alice").mine and m.view("alice").position is None

    children[0].code = 0          # alice's run ends
    m.poll()
    assert len(children) == 2 and b in " ".join(children[1].cmd)
    assert m.view("bob").mine and m.view("bob").snap.run_id == b and m.view("carol").position == 1
    assert m.snapshot(a).status != "running" and c not in " ".join(children[1].cmd)
    # alice, done, sees her own result rather than bob's run; dave, new here, sees bob's run.
    assert m.view("alice").snap.run_id == a and m.view("alice").mine
    assert m.view("dave").snap.run_id == b and not m.view("dave").mine


def test_one_queued_or_running_run_per_owner_and_a_capped_queue(env):
    make, _, clock = env
    m = make(queue_cap=2)
    submit(m, "alice", clock)
    with pytest.raises(jobs.JobError, match="already going"):
        submit(m, "alice", clock)
    submit(m, "bob", clock)
    with pytest.raises(jobs.JobError, match="already queued"):
        submit(m, "bob", clock)
    submit(m, "carol", clock)
    with pytest.raises(jobs.JobError, match="queue is full"):
        submit(m, "dave", clock)


def test_only_the_owner_stops_a_run_and_a_queued_start_can_be_taken_back(env):
    make, children, clock = env
    m = make()
    a = submit(m, "alice", clock)
    b = submit(m, "bob", clock)
    assert not m.stop("bob", run_id=a) and children[0].signals == []
    assert not m.view("carol").can_stop and not m.stop("carol")
    assert m.stop("bob") and m.view("bob").position is None      # bob's queued start is withdrawn
    assert m.snapshot(b).status == "stopped"
    assert m.stop("alice") and children[0].signals == [signal.SIGTERM]
    m.poll()
    assert len(children) == 1   # nothing was left in the queue to start


def test_public_bounds_refuse_a_big_run_and_stop_a_long_one(env):
    make, children, clock = env
    m = make()
    with pytest.raises(jobs.JobError, match="at most 10,000"):
        m.submit(cfg(epochs=20, train_limit=1000), "alice")
    assert children == []
    submit(m, "alice", clock)
    clock.now += 599
    m.poll()
    assert children[0].signals == []
    clock.now += 2
    m.poll()
    assert children[0].signals == [signal.SIGTERM]
    m.poll()
    assert "time limit" in m.snapshot().note


def test_the_demo_budget_is_the_public_bound():
    bounds = jobs.public_bounds()
    bounds.check(cfg(epochs=4, train_limit=0, val_size=5000))           # 4 epochs of demo fit (it trains 3)
    with pytest.raises(jobs.JobError):
        bounds.check(cfg(epochs=5, train_limit=0, val_size=5000))
    assert "minutes" in bounds.describe()


def test_local_mode_has_one_owner_no_bounds_and_the_plain_runs_folder(env, tmp_path):
    make, children, clock = env
    m = make(public=False)
    run_id = m.submit(cfg(epochs=500, train_limit=0))    # unbounded: the desk's own machine
    assert m.runs_dir_for() == (tmp_path / "runs").resolve()
    cmd = children[0].cmd
    assert cmd[cmd.index("--runs-dir") + 1] == str(m.runs_dir) and cmd[cmd.index("--run-id") + 1] == run_id
    with pytest.raises(jobs.JobError, match="already going"):
        m.submit(cfg())


def test_visitors_get_their_own_folder_which_is_deleted_after_the_retention_time(env, tmp_path):
    make, children, clock = env
    m = make(retention_s=3600)
    run_id = submit(m, "alice", clock)
    folder = m.runs_dir_for("alice")
    assert folder == (tmp_path / "runs" / "visitors" / "alice").resolve() and folder.is_dir()
    assert str(folder) in " ".join(children[0].cmd)
    with pytest.raises(jobs.JobError):
        m.runs_dir_for("../alice")
    clock.now += 7200
    assert m.cleanup() == [] and folder.is_dir()                  # still running: kept
    children[0].code = 0
    m.poll()
    clock.now += 3000
    assert m.cleanup() == [] and folder.is_dir()                  # ended 50 minutes ago: kept
    clock.now += 700
    assert m.cleanup() == ["alice"] and not folder.exists()
    assert m.snapshot(run_id).status == "idle" and m.view("alice").snap.run_id is None


def test_a_visitor_who_only_uploaded_a_dataset_is_cleaned_up_after_the_retention_time(env, tmp_path):
    make, children, clock = env
    m = make(retention_s=3600)
    upload = tmp_path / "runs" / "visitors" / "bob" / ".datasets" / "leaves.zip"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"PK")
    for p in (upload, upload.parent, upload.parent.parent):
        os.utime(p, (clock.now - 1800, clock.now - 1800))
    assert m.cleanup() == [] and upload.exists()              # written 30 minutes ago: kept
    clock.now += 1900
    assert m.cleanup() == ["bob"] and not upload.parent.parent.exists()


def test_queue_estimate_uses_the_running_runs_eta_and_the_measured_speed(env):
    make, children, clock = env
    m = make()
    a = submit(m, "alice", clock)
    submit(m, "bob", clock, train_limit=2000)
    submit(m, "carol", clock)
    assert m.view("bob").eta_s is None            # nothing measured yet
    run = Run(m.runs_dir_for("alice") / a)
    run.dir.mkdir(parents=True)
    run.metrics_path.write_text('{"kind": "step", "step": 5, "epoch": 0, "images_per_s": 100.0, "eta_s": 30.0}\n')
    m.snapshot()                                  # the manager reads the speed from the running run
    assert m.view("bob").eta_s == pytest.approx(30.0)
    assert m.view("carol").eta_s == pytest.approx(30.0 + jobs.Bounds.images(cfg(train_limit=2000)) / 100.0 + 15)


@pytest.mark.slow
def test_a_restarted_manager_reattaches_a_live_child_and_marks_a_dead_one(tmp_path):
    runs = tmp_path / "runs"
    live_id, dead_id = "20260101-000000-simple_cnn-aaaa", "20260101-000000-simple_cnn-bbbb"
    # A real process whose command line names the run, as a training child's does.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", live_id])
    try:
        first = jobs.JobManager(runs, spawn=lambda cmd, log: child, dispatch=False)
        first.submit(cfg(epochs=500, train_limit=0))
        live = first.snapshot().run_id
        record = first.runs_dir / ".jobs" / f"{live}.json"
        text = record.read_text().replace(live, live_id)
        record.unlink()
        (runs / ".jobs" / f"{live_id}.json").write_text(text)
        (runs / ".jobs" / f"{dead_id}.json").write_text(text.replace(live_id, dead_id)
                                                        .replace(f'"pid": {child.pid}', '"pid": 999999999'))
        again = jobs.JobManager(runs, dispatch=False)               # the app, restarted
        assert again.snapshot(live_id).status in ("starting", "running")
        assert again.snapshot(dead_id).status == "stopped"
        with pytest.raises(jobs.JobError, match="already going"):
            again.submit(cfg())
        assert again.stop()                                        # SIGTERM by pid
        child.wait(timeout=10)
        again.poll()
        assert again.snapshot(live_id).status != "running"
    finally:
        child.kill()


def test_crafted_run_ids_reach_no_other_folder(env):
    make, children, clock = env
    m = make()
    bob = submit(m, "bob", clock)
    children[0].code = 0
    m.poll()
    Run.create(m.runs_dir_for("bob") / bob, cfg())
    for crafted in (f"../bob/{bob}", str(m.runs_dir_for("bob") / bob)):
        with pytest.raises(jobs.JobError, match="not a run id"):
            m.resume(crafted, "alice")
        assert m.snapshot(crafted, m.runs_dir_for("alice")).events == []
    with pytest.raises(jobs.JobError, match=f"no run {bob} here"):
        m.resume(bob, "alice")


def test_a_training_child_gets_an_allowlisted_environment_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws_secret")
    monkeypatch.setenv("SOME_NEW_SETTING", "x")
    monkeypatch.setenv("CIFAR_DEMO_PUBLIC", "1")
    monkeypatch.setenv("CIFAR_DEMO_HUB_TOKEN", "sneaky")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    log = tmp_path / "child.log"
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    jobs.records.spawn([sys.executable, "-c", script], log).wait(timeout=60)
    seen = json.loads(log.read_text().strip().splitlines()[-1])
    assert not {"HF_TOKEN", "AWS_SECRET_ACCESS_KEY", "SOME_NEW_SETTING", "CIFAR_DEMO_HUB_TOKEN"} & seen.keys()
    assert seen["CIFAR_DEMO_PUBLIC"] == "1" and seen["OMP_NUM_THREADS"] == "2"
    assert seen["PATH"] == os.environ["PATH"] and seen["PYTHONUNBUFFERED"] == "1"


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_a_training_child_yields_the_cores_to_the_app(tmp_path):
    log = tmp_path / "child.log"
    script = "import os; print(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))"
    jobs.records.spawn([sys.executable, "-c", script], log).wait(timeout=60)
    policy, nice = map(int, log.read_text().split()[-2:])
    assert policy == os.SCHED_IDLE and nice >= os.getpriority(os.PRIO_PROCESS, 0) + jobs.NICENESS - 1


def test_public_bounds_count_validation_and_test_images_and_cap_the_batch(env):
    make, children, clock = env
    m = make()
    # 1,000 training + 100 validation images per epoch, and the test images once.
    assert jobs.Bounds.images(cfg(epochs=3)) == 3 * 1100 + 100
    assert jobs.Bounds.images(cfg(epochs=3, test_limit=0)) == 3 * 1100 + 10_000
    assert jobs.Bounds.images(cfg(epochs=2, train_limit=0, val_size=45_000, test_limit=500)) == 2 * 50_000 + 500
    # A validation split as big as the training set trains nothing and counted 0 images: refused.
    for val_size in (50_000, 1_000_000):
        with pytest.raises((jobs.JobError, ValueError), match="leaves no training images"):
            m.submit(cfg(epochs=1_000_000, train_limit=0, val_size=val_size), "alice")
    with pytest.raises(jobs.JobError, match="leaves no training images"):
        jobs.Bounds.images(cfg(val_size=50_000))
    bounds = jobs.Bounds(max_images=10**9, max_seconds=600)
    with pytest.raises(jobs.JobError, match="batch size 45,000 is over"):
        bounds.check(cfg(batch_size=45_000, train_limit=45_000))
    bounds.check(cfg(batch_size=2000, train_limit=2000))
    assert children == []


class Stubborn(FakeChild):
    """A child that ignores SIGTERM (a step that never ends); only SIGKILL ends it."""

    def send_signal(self, sig):
        self.signals.append(sig)
        if sig == signal.SIGKILL:
            self.code = -9


def test_a_child_that_ignores_a_stop_or_the_time_limit_is_killed_after_the_grace_period(tmp_path):
    children, clock = [], Clock()

    def spawn(cmd, log_path):
        children.append(Stubborn(cmd))
        return children[-1]

    m = jobs.JobManager(tmp_path / "runs", public=True, bounds=jobs.Bounds(10_000, 600), spawn=spawn,
                        clock=clock, dispatch=False)
    assert m.kill_grace_s == jobs.records.KILL_GRACE_S
    submit(m, "alice", clock)
    assert m.stop("alice") and children[0].signals == [signal.SIGTERM]
    clock.now += m.kill_grace_s - 1
    m.poll()
    assert children[0].signals == [signal.SIGTERM] and m.snapshot().status == "stopping"
    clock.now += 2
    m.poll()
    assert children[0].signals == [signal.SIGTERM, signal.SIGKILL]
    m.poll()
    assert m.snapshot().status == "stopped" and "killed" in m.snapshot().note
    # The time limit: SIGTERM at 600 s, SIGKILL 30 s later.
    submit(m, "bob", clock)
    clock.now += 601
    m.poll()
    clock.now += m.kill_grace_s + 1
    m.poll()
    assert children[1].signals == [signal.SIGTERM, signal.SIGKILL]
    # Locally a stop only asks, as before.
    local = jobs.JobManager(tmp_path / "local", spawn=spawn, clock=clock, dispatch=False)
    local.submit(cfg())
    local.stop()
    clock.now += 3600
    local.poll()
    assert children[2].signals == [signal.SIGTERM]


def test_resume_goes_on_with_the_time_the_run_has_used(env):
    make, children, clock = env
    m = make()                                     # a 600 s limit
    a = submit(m, "alice", clock)
    run = Run.create(m.runs_dir_for("alice") / a, cfg())
    clock.now += 400
    assert m.stop("alice")
    m.poll()
    assert m.resume(a, "alice") == a and len(children) == 2
    clock.now += 199
    m.poll()
    assert children[1].signals == []
    clock.now += 2                                 # 400 + 201 s over the two sessions
    m.poll()
    assert children[1].signals == [signal.SIGTERM]
    m.poll()
    with pytest.raises(jobs.JobError, match="has used its 10 minutes"):
        m.resume(a, "alice")
    # Without the manager's records (an older app), the training time the run recorded counts.
    fresh = make()
    fresh._jobs.clear()
    run.metrics_path.write_text('{"kind": "step", "step": 9, "elapsed_s": 650.0}\n')
    with pytest.raises(jobs.JobError, match="has used its 10 minutes"):
        fresh.resume(a, "alice")

