"""Where the app runs (runtime) and ZeroGPU's execution model as the stand-in plays it (zerogpu_standin):
fork context, daemonic child, the task in a thread, pickled arguments and results, streamed generator
items, the call killed at its duration; the decorator switched by the same detection as the real one;
Evaluate as a GPU call; and the real `spaces` package, installed but not on ZeroGPU, changing nothing."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time

import gradio as gr
import pytest
import torch

from cifar_demo import runtime, zerogpu, zerogpu_standin
from cifar_demo.analysis import evaluate as evaluate_mod
from cifar_demo.analysis import on_gpu

from .helpers import synthetic_arrays, to_split, trained_tiny


@pytest.fixture()
def standin(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("CIFAR_DEMO_ZEROGPU_STANDIN", "1")


def test_runtime_names_each_place_and_what_follows():
    local = runtime.detect({})
    assert local.where == "local" and not local.training_in_app and local.loader_workers(2) == 2
    assert local.accelerator == runtime.local_accelerator() and local.gpu_calls_concurrent == 1
    space = runtime.detect({"SPACE_ID": "someone/cifar-demo"})
    assert space.on_space and not space.zerogpu and not space.training_in_app
    zero = runtime.detect({"SPACE_ID": "someone/cifar-demo", "SPACES_ZERO_GPU": "true"})
    assert zero.zerogpu and zero.on_space and zero.training_in_app and not zero.standin
    assert zero.loader_workers(4) == 0 and zero.gpu_calls_concurrent > 1
    # Outside a GPU call CUDA is only emulated on ZeroGPU: the app's own work stays on the CPU.
    assert zero.device() == torch.device("cpu")
    assert runtime.detect({"SPACES_ZERO_GPU": "1", "CIFAR_DEMO_ZEROGPU_STANDIN": "1"}).standin
    assert not runtime.detect({"SPACES_ZERO_GPU": "0"}).zerogpu   # spaces' own reading of the flag


def _where(box: list):
    """What a task sees of the process it runs in (box: an argument it mutates)."""
    box.append("changed in the call")
    me = multiprocessing.current_process()
    return {"pid": os.getpid(), "daemon": me.daemon,
            "main_thread": threading.current_thread() is threading.main_thread(),
            "in_call": runtime.in_gpu_call(), "device": str(runtime.current().device()), "box": box}


def test_a_call_runs_in_a_forked_daemonic_child_with_pickled_arguments(standin):
    box = ["before"]
    seen = zerogpu_standin.call(_where, 30, (box,))
    assert seen["pid"] != os.getpid() and seen["daemon"] and not seen["main_thread"] and seen["in_call"]
    assert seen["device"] == "cpu"                                  # the stand-in's GPU: what this machine has
    assert box == ["before"] and seen["box"] == ["before", "changed in the call"]   # nothing comes back by itself
    assert not runtime.in_gpu_call() and runtime.current().device() == torch.device("cpu")
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        zerogpu_standin.call(_where, 30, (lambda: 0,))               # refused in the caller, as spaces does


def _starts_a_worker():
    loader = torch.utils.data.DataLoader(list(range(4)), num_workers=1)
    return list(loader)


def _raises_gradio_error():
    raise gr.Error("a message for the visitor")


def _sleeps(seconds):
    time.sleep(seconds)
    return "woke"


def test_failures_reach_the_caller_as_spaces_reports_them(standin):
    # A daemonic child may not start processes: DataLoader workers fail inside a call.
    with pytest.raises(gr.Error, match="AssertionError"):
        zerogpu_standin.call(_starts_a_worker, 30)
    with pytest.raises(gr.Error, match="a message for the visitor"):
        zerogpu_standin.call(_raises_gradio_error, 30)
    t0 = time.monotonic()
    with pytest.raises(gr.Error, match=zerogpu_standin.ABORTED):
        zerogpu_standin.call(_sleeps, 1.0, (60,))                    # killed when its duration runs out
    assert time.monotonic() - t0 < 15


def _two_items(flag_path):
    yield 1
    # The second item only comes once the caller has the first: items stream, they are not collected.
    deadline = time.monotonic() + 20
    while not os.path.exists(flag_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield 2 if os.path.exists(flag_path) else "not streamed"


def test_generator_items_stream_back_one_by_one(standin, tmp_path):
    flag = tmp_path / "got-the-first"
    got = []
    for item in zerogpu_standin.call_generator(_two_items, 30, (str(flag),)):
        got.append(item)
        flag.touch()
    assert got == [1, 2]


@zerogpu.gpu(duration=lambda n: 5 + n)
def _pid_of(n: int) -> int:
    return os.getpid()


def test_the_decorator_follows_the_runtime(monkeypatch, standin):
    assert zerogpu.seconds(_pid_of.duration, 3) == 8
    assert _pid_of(1) != os.getpid()                                   # ZeroGPU (the stand-in): a child's
    monkeypatch.delenv("SPACES_ZERO_GPU")
    assert _pid_of(1) == os.getpid()                                   # anywhere else: the function itself


def test_evaluate_is_a_gpu_call_on_zerogpu(standin, monkeypatch):
    model, test = trained_tiny(), to_split(*synthetic_arrays(6, seed=5))
    assert on_gpu.evaluate_duration(model, test) <= on_gpu.EVAL_MAX_S
    monkeypatch.setattr(on_gpu.evaluate_mod, "evaluate", _evaluate_and_say_where)
    in_call, pid = on_gpu.evaluate(model, test)
    monkeypatch.delenv("SPACES_ZERO_GPU")
    here, same = on_gpu.evaluate(model, test)
    assert pid != os.getpid() and same == os.getpid()
    assert in_call.accuracy == here.accuracy and in_call.confusion == here.confusion


_EVALUATE = evaluate_mod.evaluate


def _evaluate_and_say_where(model, split, **kw):
    return _EVALUATE(model, split, **kw), os.getpid()


def test_the_real_spaces_package_off_zerogpu_changes_nothing(monkeypatch):
    spaces = pytest.importorskip("spaces")
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def task():
        return os.getpid()

    assert spaces.GPU(task) is task and spaces.GPU(duration=10)(task) is task
    assert zerogpu.gpu(task)() == os.getpid()


def test_a_space_fetches_cifar10_once_at_startup_and_says_why_it_could_not(clean_env, monkeypatch):
    import torchvision.datasets

    from cifar_demo.data import on_space

    on_space.reset()
    assert on_space.start_fetch(runtime.detect({})) is None          # locally: nothing behind the user's back
    calls = []

    def offline(root, train=True, download=False):
        calls.append(download)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    space = runtime.detect({"SPACE_ID": "teacher/cifar-demo", "SPACES_ZERO_GPU": "true"})
    thread = on_space.start_fetch(space)
    thread.join(30)
    line = on_space.status_line()
    assert calls == [True] and "could not download CIFAR-10" in line and "network is unreachable" in line

    # A download that works: once, in the background; the page says so meanwhile; then nothing more.
    on_space.reset()
    release = threading.Event()

    def fetched(download=False):
        if not download:
            raise on_space.DataSourceError("none here")
        release.wait(10)
        return type("Src", (), {"label": "CIFAR-10 (official)", "path": "somewhere"})()

    thread = on_space.start_fetch(space, resolve=fetched)
    assert "being downloaded" in on_space.status_line() and on_space.start_fetch(space, resolve=fetched) is None
    release.set()
    thread.join(10)
    assert on_space.status_line() is None and on_space.start_fetch(space, resolve=fetched) is None
    on_space.reset()
