"""The zoo's generated Markdown: the registry, the shipped model cards and the measured CPU
latency (docs/latency.json). Two blocks, each between its own markers:

- `zoo-table` (README.md): a short table, one row per model (source, params, accuracy, latency);
- `zoo-details` (docs/zoo.md): the full table, where each model comes from and the commands that
  made each shipped weights file.

`python -m cifar_demo zoo --markdown FILE` fills whichever of the two FILE has (write_blocks)."""

from __future__ import annotations

import json
import platform
import re
import time
from pathlib import Path

import torch

from .. import fsio, weights, zoo
from ..analysis import predict
from ..hardware import hardware_info
from ..train import make_config
from ..zoo.registry import provenance_markdown as model_provenance
from ..zoo.registry import spec_cells
from . import tables

START, END = "<!-- zoo-table:start -->", "<!-- zoo-table:end -->"
DETAILS_START, DETAILS_END = "<!-- zoo-details:start -->", "<!-- zoo-details:end -->"
# Measured CPU latencies for the zoo tables (written by `python -m cifar_demo zoo --latency`):
# the repository's docs/, two levels above this file's package.
LATENCY_FILE = Path(__file__).resolve().parents[2] / "docs" / "latency.json"
LATENCY_COMMAND = "python -m cifar_demo zoo --latency"


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def measure_latency(path: str | Path = LATENCY_FILE, runs: int = 50) -> dict:
    """Measure every zoo model's batch-1 CPU latency here (predict.measure_latency) and write it,
    with the machine and the software, to `path`."""
    measured = predict.measure_latency(runs=runs)
    ms = measured.pop("latency_ms")
    record = {"command": LATENCY_COMMAND, **measured, "hardware": hardware_info(),
              "torch": torch.__version__, "python": platform.python_version(),
              "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "latency_ms": {name: round(v, 2) for name, v in ms.items()}}
    fsio.atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return record


def read_latency(path: str | Path = LATENCY_FILE) -> dict | None:
    """The measured latencies, or None when they were never measured (or the file is unreadable)."""
    try:
        record = json.loads(Path(path).read_text())
        return record if isinstance(record.get("latency_ms"), dict) else None
    except (OSError, ValueError, AttributeError):
        return None


def latency_note(record: dict) -> str:
    hw = record.get("hardware") or {}
    return (f"CPU latency: {predict.latency_method(record)}, "
            f"measured by `{record['command']}` on {hw.get('cpu', '?')} "
            f"({hw.get('cores', '?')} cores, {record['threads']} threads), torch {record['torch']}, "
            f"{record['date']}.")


def _latency_line(latency: dict | None) -> str:
    return latency_note(latency) if latency else f"CPU latency: not measured yet (`{LATENCY_COMMAND}`)."


def zoo_markdown(latency_path: str | Path = LATENCY_FILE) -> str:
    """The README's short zoo table: per model its source, size, the shipped weights' test
    accuracy (plain and with TTA, from the card) and the measured CPU latency."""
    have = set(weights.available())
    latency = read_latency(latency_path)
    lat_ms = (latency or {}).get("latency_ms", {})
    head = ["model", "source project", "params", "accuracy here", "with TTA", "CPU latency"]
    rows = []
    for s in zoo.specs():
        card = weights.card_for(s.name) if s.name in have else None
        rows.append([
            f"`{s.name}`", s.source, spec_cells(s)["params"],
            _pct(card.test_accuracy) if card else "no weights yet",
            _pct(card.test_accuracy_tta) if card else "-",
            f"{lat_ms[s.name]:.1f} ms" if s.name in lat_ms else "-",
        ])
    lines = [tables.render(head, rows, right={2, 3, 4, 5}, fmt="markdown"), "", _latency_line(latency)]
    return "\n".join(lines)


def zoo_details_markdown(latency_path: str | Path = LATENCY_FILE) -> str:
    """docs/zoo.md's block: the full table (registry figures, the card's results, epochs and
    training time, the measured CPU latency, the default recipe), then the provenance."""
    have = set(weights.available())
    latency = read_latency(latency_path)
    lat_ms = (latency or {}).get("latency_ms", {})
    head = ["model", "source project", "params", "MACs", "source's accuracy",
            "accuracy here", "with TTA", "epochs", "training time", "CPU latency",
            "default recipe (--preset NAME)"]
    rows = []
    for s in zoo.specs():
        card = weights.card_for(s.name) if s.name in have else None
        cells = spec_cells(s)
        rows.append([
            f"`{s.name}`", s.source, cells["params"], cells["macs"], cells["reported"],
            _pct(card.test_accuracy) if card else "no weights yet",
            _pct(card.test_accuracy_tta) if card else "-",
            str(card.epochs) if card else "-",
            f"{card.train_seconds / 60:.0f} min" if card else "-",
            f"{lat_ms[s.name]:.1f} ms" if s.name in lat_ms else "-",
            cells["recipe"],
        ])
    lines = [tables.render(head, rows, right={2, 3, 4, 5, 6, 7, 8, 9}, fmt="markdown")]
    lines += ["", _latency_line(latency)]
    lines += ["", provenance_markdown()]
    return "\n".join(lines)


def train_command(config: dict, teachers_file: str | None = None) -> str:
    """The CLI command that reproduces a card's training config: its preset plus the flags
    that differ from it (a distilled run's targets file named `teachers_file`)."""

    preset = config.get("preset") or config["model"]
    base = make_config(preset).to_dict()
    flags = []
    for key, value in config.items():
        if key in ("preset", "model") or base.get(key) == value:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "distill":   # a file of this machine: distill_command makes it
            flags.append(f"{flag} {teachers_file or TEACHERS_FILE}")
        elif key == "init_from" and _is_weights_file(value):   # the previous stage's export (_how_made)
            flags.append(f"{flag} {PREVIOUS_STAGE}/{config['model']}.safetensors")
        elif isinstance(value, bool):
            flags.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, dict):
            flags.append(f"{flag} '{json.dumps(value)}'")
        else:
            flags.append(f"{flag} {value}")
    return " ".join(["python -m cifar_demo train --preset", preset, *flags])


TEACHERS_FILE = "TEACHERS.safetensors"
# A stage started from a weights file of the machine it ran on (not a shipped name) started from
# the stage before it: the provenance exports that stage into this folder and starts from there.
PREVIOUS_STAGE = "PREVIOUS_STAGE"


def _is_weights_file(source) -> bool:
    return isinstance(source, str) and weights.is_file_ref(source)


def distill_command(card: weights.ModelCard) -> str | None:
    """For a distilled card: the command that makes its teachers' targets file, and its time."""
    return _teach_command(card.extra.get("distillation") or {}, card.train_config)


def _teach_command(meta: dict, cfg: dict, out: str = TEACHERS_FILE) -> str | None:
    """The distill-targets command of a distillation record (export.distillation_record) for a
    run of config `cfg`, writing `out`, and its time; None without teachers."""
    teachers = [t["name"] for t in meta.get("teachers", [])]
    if not teachers:
        return None
    flags = [f"--teachers {','.join(teachers)}"]
    flags += [f"--data {cfg['data']}"] if cfg.get("data") else []
    flags += [f"--val-size {cfg['val_size']}"] if cfg.get("val_size") != 5000 else []
    flags += [f"--seed {cfg['seed']}"] if cfg.get("seed") else []
    flags += [f"--tta {meta['tta']}"] if meta.get("tta", "flip") != "flip" else []
    took = f" ({meta['seconds'] / 60:.0f} min on {_on(meta.get('hardware'))})" if meta.get("seconds") else ""
    return f"`python -m cifar_demo distill-targets {' '.join(flags)} --out {out}`{took}"


def provenance_markdown() -> str:
    """docs/zoo.md's provenance: for every model its source project (cited as the project gives
    it) and whose its default recipe is; for each shipped model the commands that made its
    weights, and where and how long."""
    lines = ["Where each model comes from, and whose its default recipe (`--preset NAME`) is:", ""]
    lines += [f"- `{s.name}` ({s.source}): {model_provenance(s)}" for s in zoo.specs()]
    lines += ["", "How the shipped weights were made (from their cards; the flags are what each "
              "run changed from its preset):", ""]
    shipped = weights.available()
    lines += [f"- `{name}`: {_how_made(weights.card_for(name))}" for name in shipped]
    return "\n".join(lines if shipped else [*lines, "- no weights shipped yet"])


def _on(hw: dict | None) -> str:
    hw = hw or {}
    return f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores{', ' + hw['gpu'] if hw.get('gpu') else ''})"


def _how_made(card: weights.ModelCard) -> str:
    export = f"`python -m cifar_demo export RUN_ID{' --dtype float16' if card.dtype == 'float16' else ''}`"
    stages = card.extra.get("stages")
    if stages:   # continued training (export.training_stages): each stage's command, then the sum
        steps = []
        files: dict[str, str] = {}   # each distinct teachers' record -> its targets file
        for st in stages:
            cfg = st["train_config"]
            teachers_file = TEACHERS_FILE
            if cfg.get("distill"):
                # A stage's own record; stages of older cards share the card's (one file).
                meta = st.get("distillation") or card.extra.get("distillation") or {}
                key = json.dumps(meta, sort_keys=True)
                if key not in files:   # the teachers' file comes before the first stage that learnt from it
                    files[key] = TEACHERS_FILE if not files else TEACHERS_FILE.replace(".", f"{len(files) + 1}.", 1)
                    made = _teach_command(meta, cfg, files[key])
                    if made:
                        steps.append(made)
                teachers_file = files[key]
            if _is_weights_file(cfg.get("init_from")):   # started from the stage before it
                steps.append(f"`python -m cifar_demo export RUN_ID --out {PREVIOUS_STAGE}`")
            steps.append(f"`{train_command(cfg, teachers_file)}` ({st['epochs']} epochs in "
                         f"{st['train_seconds'] / 60:.0f} min on {_on(st.get('hardware'))})")
        return (f"{', then '.join(steps)}, then {export}; {card.epochs} epochs in "
                f"{card.train_seconds / 60:.0f} min in all, torch {card.torch_version}, {card.date[:10]}.")
    teach = distill_command(card)
    first = f"{teach}, then " if teach else ""
    return (f"{first}`{train_command(card.train_config)}`, then {export}; {card.epochs} epochs in "
            f"{card.train_seconds / 60:.0f} min on {_on(card.hardware)}, torch {card.torch_version}, "
            f"{card.date[:10]}.")


def write_table(path: str | Path, table: str, start: str = START, end: str = END) -> bool:
    """Put `table` between the `start`/`end` markers of a Markdown file (True), or, if the file
    has no such markers, write the table as the whole file (False)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if start in text and end in text:
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        fsio.atomic_write_text(path, pattern.sub(lambda _: f"{start}\n{table}\n{end}", text, count=1))
        return True
    fsio.atomic_write_text(path, table + "\n")
    return False


# Each generated block: its markers and what fills them (README.md has the first, docs/zoo.md the second).
BLOCKS = {"zoo-table": (START, END, zoo_markdown), "zoo-details": (DETAILS_START, DETAILS_END, zoo_details_markdown)}


def write_blocks(path: str | Path) -> list[str]:
    """Fill every generated block whose markers `path` has; the names filled, in order. A file
    with neither pair of markers gets the README's short table as its whole text ([])."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    found = [name for name, (start, end, _) in BLOCKS.items() if start in text and end in text]
    for name in found:
        start, end, make = BLOCKS[name]
        write_table(path, make(), start, end)
    if not found:
        write_table(path, zoo_markdown())
    return found
