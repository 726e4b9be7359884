"""What more than one tab shows: the dataset status line, the visitor and the app's mode.
Tabs import from here, never from each other."""

from __future__ import annotations

import hashlib
import html
import os
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
from matplotlib.figure import Figure

from .. import data, jobs, runtime, train, weights
from ..analysis import compare, evalcache
from ..common import CLASSES
from ..data import on_space, pictures, uploads
from .context import AppContext


def data_status() -> str:
    """HTML: which dataset training will read, or exactly how to provide one."""
    try:
        src = data.resolve_source(download=False)
    except data.DataSourceError as e:   # on a Space, the startup download's progress or failure first
        return no_data_html(on_space.status_line() or e)
    return (f'<div style="padding:6px 0">Dataset: <b>{html.escape(src.label)}</b>, read from '
            f"<code>{html.escape(str(src.path))}</code>.</div>")


def no_data_html(error: Exception) -> str:
    # pre-wrap keeps the message's numbered options and indentation, and wraps long lines.
    return ('<div style="border-left:4px solid #ef4444;background:#fef2f2;padding:10px 14px;border-radius:4px">'
            '<b style="font-size:1.1em">No CIFAR-10 data found</b>'
            f'<div style="white-space:pre-wrap;font-family:monospace;font-size:0.9em;margin:8px 0">'
            f"{html.escape(str(error))}</div>Or download the official files with the button below. "
            "Then reload this page.</div>")


# ----------------------------------------------------------------------------- visitors (public mode)

VISITOR_KEY = "cifar-demo-visitor"   # the browser's localStorage key of the visitor token
# gr.BrowserState's "secret" is no secret: Gradio sends it to every page in /config, so anyone can
# decrypt what it encrypts. A fixed one only keeps a stored token readable after an app restart.
# What protects a token: it is 256 random bits made by the server, only its browser keeps it, and
# it travels only in that browser's requests (HTTPS on a Space); holding it is owning its runs.
BROWSER_STATE_KEY = "cifar-demo-visitor-token-not-a-secret"


def new_token(token: str | None) -> str:
    """The visitor's token: kept if the browser has one, else a new unguessable one. It lives in
    the browser (gr.BrowserState), so a reload keeps the visitor's runs."""
    return token if isinstance(token, str) and len(token) >= 32 else secrets.token_urlsafe(32)


def owner_of(ctx: AppContext, token: str | None) -> str | None:
    """The job owner of a page: the one local user, or (public mode) a hash of the visitor's token,
    so the token itself never appears in folder names or logs. None: the page has no token yet."""
    if not ctx.public:
        return jobs.LOCAL
    if not isinstance(token, str) or len(token) < 32:
        return None
    return hashlib.sha256(token.encode()).hexdigest()[:24]


def mode_html(ctx: AppContext) -> str:
    """One line saying which mode the app runs in, and what that means for the visitor."""
    m = ctx.manager
    if not ctx.public:
        return ('<div class="mode-line">Local mode: everything here is yours (runs in '
                f"<code>{html.escape(str(m.runs_dir))}</code>, Export writes <code>weights/</code>).</div>")
    return ('<div class="mode-line"><b>Public mode</b>: this app is shared. Your training runs are yours alone '
            f"(others can watch them, not stop them), wait in one queue for the "
            f"{'GPU' if runtime.current().zerogpu else 'cores'}, are limited to "
            f"{m.bounds.describe() if m.bounds else 'no bound'}, and are deleted "
            f"{jobs.RETENTION_S // 3600} hours after they end: download what you want to keep.</div>")


# ----------------------------------------------------------------------------- pictures many pages ask for

# Twenty open tabs on one training run ask for the same picture every tick: it is drawn once per
# key (for the curves: the run, its number of metrics lines, the overlay) and served from here.
# A matplotlib render costs ~0.1 s of a core; twenty every tick would slow the run they watch.
_PNG_DIR: Path | None = None
_PNGS: OrderedDict[tuple, str] = OrderedDict()
_PNG_LOCK = threading.Lock()
PNG_CACHE = 64


def cached_png(key: tuple, make_figure: Callable[[], Figure], dpi: int = 100) -> str:
    """The path of the PNG of make_figure(), rendered the first time `key` is asked for."""
    global _PNG_DIR
    with _PNG_LOCK:
        if key in _PNGS:
            _PNGS.move_to_end(key)
            return _PNGS[key]
        if _PNG_DIR is None:
            _PNG_DIR = Path(tempfile.mkdtemp(prefix="cifar-demo-pictures-"))
        path = _PNG_DIR / f"{os.urandom(8).hex()}.png"
        make_figure().savefig(path, dpi=dpi)
        _PNGS[key] = str(path)
        while len(_PNGS) > PNG_CACHE:
            Path(_PNGS.popitem(last=False)[1]).unlink(missing_ok=True)
        return str(path)


# ----------------------------------------------------------------------------- a training run's progress

def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}h {s // 60 % 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _bar(fraction: float, text: str, color: str = "#f97316") -> str:
    width = max(0.0, min(1.0, fraction)) * 100
    return (f'<div style="border:1px solid #d4d4d8;border-radius:6px;height:14px;overflow:hidden;'
            f'background:#f4f4f5"><div style="width:{width:.1f}%;height:100%;background:{color}"></div></div>'
            f'<div style="margin-top:6px;font-size:0.95em">{text}</div>')


def progress_html(snap: jobs.Snapshot) -> str:
    """A progress bar and one line: epoch, step, images/s, ETA (or the run's outcome)."""
    if snap.run_id is None:
        return _bar(0, "No run yet. Pick a model and a preset, then press <b>Start</b>.")
    run = f"Run <code>{html.escape(snap.run_id)}</code>"
    start_ev, step = snap.last("start"), snap.last("step")
    total = start_ev["total_steps"] if start_ev else None
    done = step["step"] if step else (start_ev["step"] if start_ev else 0)
    frac = done / total if total else 0.0
    if snap.status == "starting" or (snap.running and step is None):
        return _bar(frac, f"{run}: starting (loading the data, building the model)...")
    if snap.running and scoring(snap):
        return _bar(1.0, f"{run}: training done; now <b>scoring the test set</b> ({scoring(snap)}) with the "
                         "best weights. The result appears here when it is done...")
    if snap.running:
        epochs = start_ev["epochs"] if start_ev else "?"
        per_epoch = (start_ev or {}).get("steps_per_epoch")
        # A step is one batch; an epoch is one pass over the training pictures: per_epoch steps.
        where = (f"step {done - int(step['epoch']) * per_epoch}/{per_epoch} of this epoch" if per_epoch
                 else f"step {done}/{total}")
        text = (f"{run}: epoch {min(int(step['epoch']) + 1, epochs)}/{epochs}, {where} "
                f"({100 * frac:.0f}% of the run), {step['images_per_s']:.0f} images/s, "
                f"elapsed {_duration(step['elapsed_s'])}, ETA {_duration(step['eta_s'])}")
        if snap.status == "stopping":
            text += " &mdash; <b>stopping</b>"
        return _bar(frac, text)
    s = snap.summary or {}
    if snap.status in ("finished", "early_stopped"):
        how = "finished" if snap.status == "finished" else "stopped early (no better validation accuracy)"
        return _bar(1.0 if snap.status == "finished" else frac,
                    f"{run} {how} after {s.get('epochs_run', '?')} epoch(s) in {_duration(s.get('elapsed_s'))}: "
                    f"best validation accuracy <b>{pct(s.get('best_val_acc'))}</b> (epoch {s.get('best_epoch')}), "
                    f"test accuracy <b>{pct(s.get('test_acc'))}</b> (scored as Evaluate scores it: "
                    f"fp32, no TTA).", "#22c55e")
    if snap.status == "queued":
        return _bar(0, f"{run} is queued: it starts when the run before it ends.", "#a1a1aa")
    if snap.status == "stopped":
        epoch = int(step["epoch"]) + 1 if step else 0
        note = f" ({html.escape(snap.note)})" if snap.note else ""
        return _bar(frac, f"{run} stopped at step {done}/{total} (epoch {epoch}){note}. Continue it with "
                          f"<b>Resume</b> or <code>python -m cifar_demo train --resume "
                          f"{html.escape(snap.run_id)}</code>.",
                    "#a1a1aa")
    end = snap.last("end") or {}
    error = end.get("error") or "see the log below"
    return _bar(frac, f"{run} <b>failed</b>: {html.escape(str(error))}", "#ef4444")


def scoring(snap: jobs.Snapshot) -> str | None:
    """While a running run scores the test set after its last epoch (its last event is the epoch record
    of its last epoch, no end yet): how many pictures, in words; else None."""
    last, start_ev = (snap.events[-1] if snap.events else {}), snap.last("start") or {}
    if last.get("kind") != "epoch" or not start_ev.get("epochs") or last.get("epoch") != start_ev["epochs"]:
        return None
    n = start_ev.get("n_test")
    return f"{int(n):,} pictures" if isinstance(n, int) else "every picture"


def log_text(snap: jobs.Snapshot) -> str:
    """One line per epoch (train.format_epoch), framed by the start and the outcome."""
    lines = []
    for e in snap.events:
        kind = e.get("kind")
        if kind == "start":
            lines.append(f"{'resumed' if e.get('resumed') else 'started'} {e['run_id']}: {e['n_train']} training "
                         f"and {e['n_val']} validation images, {e['epochs']} epoch(s) of {e['steps_per_epoch']} "
                         f"steps, {e['device']} ({e['precision']})")
        elif kind == "epoch":
            lines.append(train.format_epoch(e))
        elif kind == "end":
            lines.append(f"end: {e.get('status')}" + (f" ({e['error']})" if e.get("error") else ""))
    if snap.status == "failed":
        # The child's own output holds the traceback's last line when it died before any event.
        lines += ["", "last output of the training process:", snap.log_tail.strip()[-1500:]]
    return "\n".join(lines)


def view_html(view: jobs.View) -> str:
    """The progress bar of the run shown, saying whose it is, and this page's place in the queue."""
    text = progress_html(view.snap)
    if view.snap.run_id is not None and not view.mine:
        text = "<div><b>A run by another visitor</b> (you can watch it, not stop it):</div>" + text
    if view.position:
        eta = "" if view.eta_s is None else f", starts in about {_duration(view.eta_s)}"
        text += (f'<div class="queue-line" style="margin-top:6px"><b>Your run is queued</b>: number '
                 f"{view.position} of {view.queued}{eta}.</div>")
    return text


# ----------------------------------------------------------------------------- a finished run of the page's owner

def run_target(ctx: AppContext, run_id: str | None, token=None) -> evalcache.Target:
    """A finished run of the page's owner, by its id: only a run of the owner's folder is ever
    read. ValueError (no token yet, not a run id) or FileNotFoundError (no best weights)."""
    owner = owner_of(ctx, token)
    if owner is None:
        raise ValueError("This page has no visitor token yet: reload it.")
    run = train.Run.by_id(run_id, ctx.runs_dir_for(owner))   # ValueError: not a run id
    return evalcache.from_run(run.dir)


def run_model(target: evalcache.Target):
    """A run's model (Evaluate's comparison, Predict's "your run"): weights.load's, verified and
    cached by the weights file's hash (a resumed run rewrites it)."""
    return weights.load(target.ref).model


# ----------------------------------------------------------------------------- the owner's runs, as lists show them

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def run_date(run_id: str) -> str:
    """When a run started, from its id (runs.new_run_id: a UTC stamp first): "7 Dec 03:51 UTC"."""
    try:
        t = time.strptime(run_id[:15], "%Y%m%d-%H%M%S")
    except ValueError:
        return ""
    return f"{t.tm_mday} {MONTHS[t.tm_mon - 1]} {t.tm_hour:02d}:{t.tm_min:02d} UTC"


def run_label(r: dict, study: str | None = None) -> str:
    """A list entry a person can pick from: model, date, result, then the id (train.list_runs's dict);
    a run of a Compare study says so first."""
    s = r["summary"]
    result = ("no result yet" if s is None else
              f"test {pct(s.get('test_acc'))}" + ("" if s.get("status") == "finished" else f", {s.get('status')}"))
    parts = [(r.get("config") or {}).get("model", "?"), run_date(r["run_id"]), result, f"run {r['run_id']}"]
    text = " · ".join(p for p in parts if p)
    return f"Compare study {study}: {text}" if study else text


def owner_runs(runs_dir, finished: bool = False) -> list[tuple[dict, str | None]]:
    """The runs of one owner's folder as lists offer them: the owner's own runs (the Train tab's),
    newest first, then the runs its Compare studies made, grouped after them; each with the id of
    its study (None for an own run). `finished`: only runs with a result and best weights."""
    studies = compare.study_runs(runs_dir)
    runs = [r for r in train.list_runs(runs_dir) if not finished or (r["summary"] is not None and r["has_best"])]
    return ([(r, None) for r in runs if r["run_id"] not in studies] +
            [(r, studies[r["run_id"]]) for r in runs if r["run_id"] in studies])


def finished_runs(ctx: AppContext, token=None) -> list[tuple[dict, str | None, tuple[str, ...]]]:
    """The page owner's finished runs as lists offer them (owner_runs), each with the id of its
    study and the classes it predicts (CIFAR-10's unless it trained on your own images); none
    before the page has a token."""
    owner = owner_of(ctx, token)
    if owner is None:
        return []
    return [(r, study, tuple(train.Run(r["dir"]).classes() or CLASSES))
            for r, study in owner_runs(ctx.runs_dir_for(owner), finished=True)]


def keep_choice(choices: list[tuple[str, str]], current, default) -> gr.Dropdown:
    """A refreshed dropdown: `current` stays chosen while it is still offered, else `default`."""
    return gr.Dropdown(choices=choices, value=current if current in {v for _, v in choices} else default)


def upload_32x32(path: str | None) -> np.ndarray:
    """An uploaded picture as the models see it (centre-cropped and shrunk to 32x32): only a file of
    Gradio's upload folder (data/uploads.py); gr.Error for people otherwise."""
    if not path:
        raise gr.Error("No file arrived; please upload a picture again.")
    try:
        return pictures.thumbnail(uploads.uploaded_path(path))
    except pictures.ImageError as e:
        raise gr.Error(str(e)) from None
