"""A stand-in for ZeroGPU's `spaces.GPU`, for tests and bench/gpu_check.py (no Hub scheduler, no quota).

It plays the execution model of the `spaces` package (0.51.3, spaces/zero/wrappers.py), which is what
code under it must survive:

- each call runs in a child made with multiprocessing.get_context("fork"), daemon=True (so it may not
  start processes of its own: no DataLoader workers, no multiprocessing pools);
- the task runs in a thread of that child (not its main thread: no signal handlers there);
- arguments are pickled on the way in, results, exceptions and each item of a generator on the way out
  (nothing the child changes in the parent's objects comes back);
- a generator's items stream back as they are produced; a consumer that closes the generator sets a
  stop event, and the child closes the task's generator at its next item;
- the call is killed (SIGKILL) when its duration runs out, and the caller gets ZeroGPU's "GPU task
  aborted" error; an exception in the task reaches the caller as a gradio Error naming its class (a
  gr.Error raised by the task passes as it is).

Differences, on purpose: the real package reuses an idle child for the next call and only warns at the
duration (the Hub takes the GPU back); here every call gets a fresh child and the duration is a hard limit.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import threading
import time
import traceback
from typing import Any, Callable, Iterator

_CTX = multiprocessing.get_context("fork")
_IN_CHILD = False
ABORTED = "GPU task aborted"        # the real package's message when its child dies (duration, crash)


class _End:
    pass


class _Failed:
    def __init__(self, exc: BaseException):
        self.error_cls = type(exc).__name__
        self.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.gradio_error = exc if _is_gradio_error(exc) else None


def in_child() -> bool:
    """True inside a stand-in GPU call."""
    return _IN_CHILD


def _is_gradio_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("gradio") and type(exc).__name__ == "Error"


def _worker_error(message: str) -> Exception:
    import gradio as gr  # lazy: gradio only when a GPU call fails (the CLI and the engine never import it)

    return gr.Error(message, title="ZeroGPU worker error")


def _put(results, item) -> None:
    try:
        results.put(item)
    except (pickle.PicklingError, TypeError, AttributeError) as e:   # an unpicklable result
        results.put(_Failed(e))


def _child(task: Callable, payload: bytes, results, stop, generator: bool) -> None:
    global _IN_CHILD
    _IN_CHILD = True
    args, kwargs = pickle.loads(payload)

    def run() -> None:
        try:
            if not generator:
                _put(results, ("ok", task(*args, **kwargs)))
                return
            gen = task(*args, **kwargs)
            for item in gen:
                if stop.is_set():
                    gen.close()
                    break
                _put(results, ("ok", item))
        except Exception as e:
            _put(results, _Failed(e))

    # As in spaces: the task runs in a thread of the child, not in its main thread.
    worker = threading.Thread(target=run, name="gpu-task")
    worker.start()
    worker.join()
    results.put(_End())


def _start(task: Callable, args: tuple, kwargs: dict, generator: bool):
    payload = pickle.dumps((args, kwargs))   # a PicklingError here, in the caller, as in spaces
    results, stop = _CTX.Queue(), _CTX.Event()
    proc = _CTX.Process(target=_child, args=(task, payload, results, stop, generator), daemon=True)
    proc.start()
    return proc, results, stop


def _next(proc, results, deadline: float):
    """The child's next message; kills it and raises the abort error past the deadline or when it died."""
    while True:
        try:
            return results.get(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
        except queue.Empty:
            pass
        if time.monotonic() >= deadline or not proc.is_alive():
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            try:   # a last message written just before the end
                return results.get(timeout=0.05)
            except queue.Empty:
                raise _worker_error(ABORTED) from None


def _raise(failed: _Failed):
    if failed.gradio_error is not None:
        raise failed.gradio_error
    print(failed.traceback, flush=True)
    raise _worker_error(failed.error_cls)


def call(task: Callable, duration_s: float, args: tuple = (), kwargs: dict | None = None) -> Any:
    """task(*args, **kwargs) as a GPU call of at most duration_s seconds."""
    proc, results, _ = _start(task, args, kwargs or {}, generator=False)
    deadline = time.monotonic() + duration_s
    try:
        while True:
            msg = _next(proc, results, deadline)
            if isinstance(msg, _Failed):
                _raise(msg)
            if isinstance(msg, tuple):
                return msg[1]
    finally:
        _reap(proc)


def call_generator(task: Callable, duration_s: float, args: tuple = (), kwargs: dict | None = None) -> Iterator:
    """The items of the generator task(*args, **kwargs), produced in a GPU call of at most duration_s."""
    proc, results, stop = _start(task, args, kwargs or {}, generator=True)
    deadline = time.monotonic() + duration_s
    try:
        while True:
            msg = _next(proc, results, deadline)
            if isinstance(msg, _End):
                return
            if isinstance(msg, _Failed):
                _raise(msg)
            try:
                yield msg[1]
            except GeneratorExit:
                stop.set()
                raise
    finally:
        _reap(proc)


def _reap(proc) -> None:
    proc.join(2)
    if proc.is_alive():
        proc.kill()
        proc.join(2)


def child_pid() -> int | None:
    """This process's id inside a GPU call (None outside one)."""
    return os.getpid() if _IN_CHILD else None
