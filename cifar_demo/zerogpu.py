"""GPU calls: `@gpu(duration=...)` marks a function that needs the accelerator.

On a ZeroGPU Space it is `spaces.GPU` itself (the `spaces` package, installed there): the call runs
in a forked, daemonic child holding a GPU for at most `duration` seconds (a number, or a callable of
the call's arguments that returns one), arguments and results pickled, a generator's items streamed
back. With the stand-in switched on (runtime: SPACES_ZERO_GPU and CIFAR_DEMO_ZEROGPU_STANDIN) the
same model is played by cifar_demo.zerogpu_standin. Anywhere else (a laptop, a CPU or paid GPU
Space) the function runs as it is, in the caller's process: that is also what `spaces.GPU` does
outside ZeroGPU.

Decorate at import time (module level): ZeroGPU requires its GPU functions to exist when the app
launches, and refuses a Space that has none.
"""

from __future__ import annotations

import functools
import inspect
from datetime import timedelta
from typing import Callable

from . import runtime, zerogpu_standin

DEFAULT_DURATION = 60   # seconds: spaces.GPU's default (spaces/zero/client.py DEFAULT_SCHEDULE_DURATION)
# ZeroGPU counts a call on the default "large" size (half an RTX Pro 6000) as this many times its
# duration against the visitor's daily quota (spaces 0.51.3, spaces/zero/configs.json "duration_factor").
QUOTA_FACTOR = 1.5


def seconds(duration, *args, **kwargs) -> float:
    """A duration as spaces.GPU takes it (number, timedelta, or a callable of the call's
    arguments), in seconds."""
    if callable(duration):
        duration = duration(*args, **kwargs)
    if duration is None:
        return float(DEFAULT_DURATION)
    if isinstance(duration, timedelta):
        return duration.total_seconds()
    return float(duration)


def gpu(fn: Callable | None = None, *, duration=DEFAULT_DURATION) -> Callable:
    """`@gpu` or `@gpu(duration=...)`: fn as a GPU call where the runtime makes GPU calls."""
    if fn is None:
        return functools.partial(gpu, duration=duration)
    rt = runtime.current()
    if rt.zerogpu and not rt.standin:
        import spaces  # lazy: installed on ZeroGPU Spaces; optional everywhere else

        return spaces.GPU(fn, duration=duration)

    # Decided at each call, so that a test may switch the stand-in on and off.
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            now = runtime.current()
            if now.zerogpu and now.standin:
                yield from zerogpu_standin.call_generator(fn, seconds(duration, *args, **kwargs), args, kwargs)
            else:
                yield from fn(*args, **kwargs)
        stream.duration = duration
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        now = runtime.current()
        if now.zerogpu and now.standin:
            return zerogpu_standin.call(fn, seconds(duration, *args, **kwargs), args, kwargs)
        return fn(*args, **kwargs)
    call.duration = duration
    return call


in_gpu_call = runtime.in_gpu_call
