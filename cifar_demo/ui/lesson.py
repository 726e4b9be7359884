"""What the app offers a lesson: the Train tab's first choice (a first training in about a minute, the
full demo, the overfitting pair), the sentence that says what to notice in each, the models' epoch
times shown before a slow one is picked, the overfitting pair for Compare recipes, and the teacher's
plan (docs/lesson.md) at the foot of the page.

On a CPU the lesson preset comes first (train.presets: "lesson"); where a GPU is present the full
`demo` does (hardware.hardware_info). Picking one fills the model, the preset and every setting
(ui.train_page.on_pick), which stay editable in the tab's closed "Model and recipe" section.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from .. import runtime, train, zoo
from ..hardware import hardware_info
from ..train import speed
from .common import owner_of
from .context import AppContext

# (label, preset, what to notice). Labels say what a run costs in words a class reads; the measured
# times are in docs/benchmarks.md (bench/lesson.py).
PICKS: tuple[tuple[str, str, str], ...] = (
    ("First training (short)", "lesson",
     "A first training on 5,000 pictures for 4 epochs: watch the accuracy curves rise and the guesses "
     "under the curves turn green, epoch by epoch."),
    ("Full demo", "demo",
     "The full demo: 3 epochs on all 45,000 training pictures, the same recipe as the first training; "
     "on a GPU it takes seconds, on a laptop CPU several minutes."),
    ("Overfitting", "overfit",
     "Only 500 pictures, no augmentation, 30 epochs. Notice the gap: training accuracy climbs to about "
     "100% (the network learns these 500 pictures by heart) while validation accuracy stops rising "
     "early: memorising is not learning what a cat looks like."),
    ("Overfitting + augmentation", "overfit_aug",
     "The same 500 pictures, each shifted and mirrored anew every epoch (augmentation). Notice: training "
     "accuracy rises more slowly, and the gap to validation is smaller. Run both in Compare recipes to "
     "see them side by side."),
)
NOTES = {preset: note for _, preset, note in PICKS}
# docs/lesson.md, the teacher's plan: shown at the foot of the app, linked from its header.
PLAN = Path(__file__).resolve().parents[2] / "docs" / "lesson.md"
HEADER_LINK = "Teaching a class? [The 45-minute lesson plan](#lesson-plan) is at the foot of this page."


def has_gpu() -> bool:
    """A GPU trains here, so the full demo is quick enough to come first: CUDA or Apple's MPS in
    this process, or a ZeroGPU Space, whose runs are GPU calls (the app's own process has no GPU
    outside them; the test stand-in's calls train on this machine, so they count as what it has)."""
    rt = runtime.current()
    return hardware_info()["gpu"] is not None or (rt.zerogpu and not rt.standin)


def pick_choices(gpu: bool | None = None) -> list[tuple[str, str]]:
    """The picks as (label, preset); `demo` first where a GPU is present, else the lesson preset."""
    gpu = has_gpu() if gpu is None else gpu
    picks = [(label, preset) for label, preset, _ in PICKS]
    if gpu:
        picks.sort(key=lambda p: p[1] != "demo")
    return picks


def first_pick(gpu: bool | None = None) -> str:
    return pick_choices(gpu)[0][1]


def model_of(preset: str) -> str:
    """The model a pick trains (its preset names it)."""
    return train.presets()[preset]["model"]


def model_choices(times: dict[str, speed.EpochTime]) -> list[tuple[str, str]]:
    """The zoo's names as (label, name): a slow model's label says how long an epoch takes here."""
    return [(f"{name} ({times[name].words()} here)" if name in times and times[name].slow else name, name)
            for name in zoo.names()]


def speed_note(times: dict[str, speed.EpochTime]) -> str:
    """Where the epoch times of the model list come from."""
    sources = sorted({t.source for t in times.values() if t.slow})
    if not sources:
        return "An architecture of the zoo."
    return "An architecture of the zoo. Epoch times (45,000 pictures) from " + "; ".join(sources) + "."


def model_list(ctx: AppContext, token=None):
    """Page load: the model list with the epoch times of this machine's runs of the page's owner
    (else the measured table: train.speed)."""
    owner = owner_of(ctx, token)
    runs_dir = ctx.runs_dir_for(owner) if owner is not None else None
    times = speed.epoch_times(zoo.names(), runs_dir)
    return gr.Dropdown(choices=model_choices(times), info=speed_note(times))


def plan_section() -> None:
    """The lesson plan (docs/lesson.md) in a closed section at the foot of the app; the header links to it.
    Left out where the docs are not shipped."""
    if PLAN.is_file():
        with gr.Accordion("For teachers: a 45-minute lesson plan (docs/lesson.md)", open=False, elem_id="lesson-plan"):
            gr.Markdown(PLAN.read_text(encoding="utf-8"))


def overfit_pair() -> tuple:
    """The Compare recipes form filled with the overfitting pair: (model, seeds, epochs, training
    images, validation images, then A's and B's augmentation, batch mix and label smoothing): the
    `overfit` preset's budget, A without augmentation, B with it, one seed."""
    a, b = train.make_config("overfit"), train.make_config("overfit_aug")
    return (a.model, 1, a.epochs, a.train_limit, a.val_size,
            a.augment, "off", a.label_smoothing, b.augment, "off", b.label_smoothing)
