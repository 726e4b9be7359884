"""Model zoo tab: every architecture with its source, size, cost, accuracy and CPU latency, and
the visitor's own finished runs beside them (a table, and stars on the accuracy-vs-size plot)."""

from __future__ import annotations

import threading

import gradio as gr
from matplotlib.figure import Figure

from .. import weights, zoo
from ..analysis import predict
from ..common import CLASSES
from ..reporting import plots
from ..zoo.registry import RECIPE_ORIGINS, provenance_markdown
from .common import finished_runs, pct, run_date
from .context import FREE, MODELS, AppContext

# Timed runs per model (after predict's warm-up passes); the median is shown. Fewer than the
# README's 50: a visitor waits for these.
LATENCY_RUNS = 10

COLUMNS = ["model", "source", "source's accuracy", "default recipe", "our test accuracy", "with TTA",
           "trained here", "params", "MACs", "weights file", "CPU latency"]
# Shares of the table's width (the automatic widths gave the source column so much that the
# last columns ran off the side).
COLUMN_WIDTHS = ["10%", "14%", "8%", "7%", "10%", "7%", "10%", "8%", "8%", "9%", "9%"]

INTRO = ("Every CIFAR-10 classifier of the app: architectures rebuilt from public projects (the "
         "*source*), plus our speed-first `airnet`. **Source's accuracy** is what that project reports on the official "
         "CIFAR-10 test set; **our test accuracy** comes from the model card of the weights we "
         "trained (the line under the table names the test set), **with TTA** averages each "
         "image with its mirror and shifted copies, and **trained here** is the epochs and wall "
         "time of that training run. **Default recipe** says whether the training settings of "
         "`--preset NAME` are the source's own or ours (where the source states none, or we "
         "changed what it states); the list below cites each source and says which settings are "
         "whose. MACs are the multiply-accumulates of one 32x32 image.")

# Measured latencies, kept for the life of the process: {model: ms}, plus how they were taken.
_latency: dict[str, float] = {}
_latency_note = ""
_lock = threading.RLock()


# ------------------------------------------------------------------------------ rows


def _card(name: str):
    """The model's card if its weights are here, else None; a broken card is reported as text."""
    if name not in weights.available():
        return None
    try:
        return weights.card_for(name)
    except weights.WeightsError as exc:
        return str(exc)


def _size_mb(name: str) -> str:
    path = weights.weights_dir() / f"{name}.safetensors"
    return f"{path.stat().st_size / 1e6:.1f} MB" if path.is_file() else "-"


def _count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def _cards() -> dict:
    """{model: card, error text or None} for every zoo model."""
    return {s.name: _card(s.name) for s in zoo.specs()}


def _datasets(cards: dict) -> list[str]:
    return sorted({c.dataset for c in cards.values() if c is not None and not isinstance(c, str)})


def _results(card, datasets: list[str]) -> list[str]:
    """[test accuracy, with TTA, trained here] from a card. The test set is named in the cell
    only where the cards do not all share one (otherwise the line under the table names it)."""
    if card is None:
        return ["no weights yet", "-", "-"]
    if isinstance(card, str):
        return ["card unreadable", "-", "-"]
    accuracy = f"{card.test_accuracy:.2%}" + (f" ({card.dataset})" if len(datasets) > 1 else "")
    tta = "-" if card.test_accuracy_tta is None else f"{card.test_accuracy_tta:.2%}"
    return [accuracy, tta, f"{card.epochs} ep, {card.train_seconds / 60:.0f} min"]


def scored_on(cards: dict | None = None) -> str:
    """The line under the table: which test set our accuracies are on."""
    datasets = _datasets(_cards() if cards is None else cards)
    if not datasets:
        return "No model has trained weights here yet."
    return f"Our test accuracies are on the test set of {' / '.join(datasets)}."


def zoo_rows(cards: dict | None = None) -> list[list[str]]:
    """One row per zoo model (no model is built: the registry, the cards and files hold the figures)."""
    rows, cards = [], _cards() if cards is None else cards
    datasets = _datasets(cards)
    for s in zoo.specs():
        reported = "- (ours)" if s.reported_accuracy is None else f"{s.reported_accuracy:.2f}%"
        ms = _latency.get(s.name)
        rows.append([s.name, s.source, reported, RECIPE_ORIGINS[s.recipe_source],
                     *_results(cards[s.name], datasets), _count(s.params), _count(s.macs),
                     _size_mb(s.name), "not measured" if ms is None else f"{ms:.1f} ms"])
    return rows


OPTIMIZERS = {"sgd": "SGD (stochastic gradient descent) with momentum", "sgd-nesterov": "SGD with Nesterov momentum",
              "adam": "Adam", "adamw": "AdamW (Adam with decoupled weight decay)",
              "sam": "SAM (SGD that seeks flat minima)", "muon": "Muon for the filters, SGD for the rest"}
SCHEDULES = {"cosine": "falls along a cosine curve", "onecycle": "rises, then falls (one cycle)",
             "step": "drops in steps", "linear": "falls in a straight line", "constant": "stays constant"}


def recipe_words(r: dict) -> str:
    """zoo.recipe_summary's line ("sgd-nesterov lr1.5 x10ep bs1024 ...") in plain words."""
    opt = "sgd-nesterov" if r.get("optimizer") == "sgd" and r.get("nesterov") else r.get("optimizer", "")
    words = [f"optimizer {OPTIMIZERS.get(opt, opt)}"] if opt else []
    if "lr" in r:
        words.append(f"learning rate {r['lr']:g} (the size of each step downhill)")
    if "epochs" in r:
        words.append(f"{r['epochs']} epochs (passes over all the training pictures)")
    if "batch_size" in r:
        words.append(f"{r['batch_size']:,} pictures per step (batch size)")
    if r.get("schedule"):
        words.append(f"the learning rate {SCHEDULES.get(r['schedule'], r['schedule'])}")
    if r.get("weight_decay"):
        words.append(f"weight decay {r['weight_decay']:g} (pulls every weight a little towards 0)")
    if r.get("label_smoothing"):
        words.append(f"label smoothing {r['label_smoothing']:g} (the target gives the true class "
                     f"{1 - r['label_smoothing'] * 0.9:.0%}, the rest shared by the others)")
    if r.get("augment", "none") != "none":
        words.append(f"augmentation preset {r['augment']} (see the Augmentations tab)")
    if r.get("mixes"):
        words.append(f"pictures mixed in pairs: {' and '.join(sorted(r['mixes']))}")
    if r.get("ema"):
        words.append(f"EMA {r['ema']:g} (the weights kept are a running average of the last steps')")
    return "; ".join(words) + "."


def origins_markdown() -> str:
    """Where each model comes from (its source project cited), and whose its default recipe is."""
    lines = []
    for s in zoo.specs():
        reported = "" if s.reported_accuracy is None else f", reported {s.reported_accuracy:.2f}%"
        lines.append(f"- **{s.name}** ({s.source}{reported}): {s.description} {provenance_markdown(s)} "
                     f"Settings: `{zoo.recipe_summary(s.recipe)}`, in words: {recipe_words(s.recipe)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ your runs

YOUR_COLUMNS = ["your run", "model", "started", "test accuracy", "tested on", "epochs", "training time", "params"]
YOUR_WIDTHS = ["30%", "9%", "12%", "9%", "18%", "6%", "9%", "7%"]   # the whole table in the page's width


def your_runs(ctx: AppContext, token=None) -> list[dict]:
    """The page owner's finished runs (newest first, then its Compare studies'), as plain dicts:
    run id, model, date, test accuracy and the test set, epochs, minutes, parameters (the zoo's
    count for the model), whether it predicts CIFAR-10's classes, and its study if any."""
    out = []
    for r, study, classes in finished_runs(ctx, token):
        s, model = r["summary"], (r.get("config") or {}).get("model") or r["summary"].get("model", "?")
        spec = zoo.get_spec(model) if model in zoo.names() else None
        out.append({"run_id": r["run_id"], "model": model, "date": run_date(r["run_id"]), "study": study,
                    "test_acc": s.get("test_acc"), "n_test": s.get("n_test"), "dataset": s.get("dataset", ""),
                    "epochs": s.get("epochs_run"), "seconds": s.get("elapsed_s"),
                    "params": spec.params if spec else None,
                    "cifar10": classes == CLASSES})
    return out


def your_rows(runs: list[dict]) -> list[list[str]]:
    """One table row per run of yours."""
    rows = []
    for r in runs:
        name = f"{r['run_id']}" + (f" (Compare study {r['study']})" if r["study"] else "")
        tested = f"{r['n_test']:,} pictures of {r['dataset']}" if r["n_test"] else r["dataset"]
        minutes = "-" if r["seconds"] is None else f"{r['seconds'] / 60:.1f} min"
        rows.append([name, r["model"], r["date"], pct(r["test_acc"]), tested, str(r["epochs"] or "-"), minutes,
                     "-" if r["params"] is None else _count(r["params"])])
    return rows


def your_note(runs: list[dict]) -> str:
    if not runs:
        return ("*Your runs:* none finished yet. A run you train in the Train tab appears here, and as a "
                "black star on the left plot, beside the shipped models.")
    return (f"*Your runs:* {len(runs)} finished, each tested on the pictures its row names (the shipped "
            "models on all of CIFAR-10's test set). The black stars on the left plot are those that learnt "
            "CIFAR-10's ten classes.")


def refresh_yours(ctx: AppContext, token=None) -> tuple[list[list[str]], str, Figure]:
    """The runs table, its line, and the accuracy-vs-size plot of our weights with your runs on it."""
    runs = your_runs(ctx, token)
    return your_rows(runs), your_note(runs), accuracy_plots(yours=runs)[0]


# ------------------------------------------------------------------------------ plots


def accuracy_plots(cards: dict | None = None, yours: list[dict] = ()) -> tuple[Figure, Figure]:
    """(our test accuracy vs parameters, the sources' reported accuracy vs parameters); `yours`
    (your_runs) adds a star per run of CIFAR-10's classes to the first."""
    ours, datasets, cards = [], set(), _cards() if cards is None else cards
    for s in zoo.specs():
        card = cards[s.name]
        if card is not None and not isinstance(card, str):
            ours.append({"name": s.name, "params": s.params, "accuracy": card.test_accuracy})
            datasets.add(card.dataset)
    for r in yours:
        if r["cifar10"] and r["test_acc"] is not None and r["params"]:
            ours.append({"name": f"yours: {r['model']} {r['date']}", "params": r["params"],
                         "accuracy": r["test_acc"], "yours": True})
    theirs = [{"name": s.name, "params": s.params,
               "accuracy": None if s.reported_accuracy is None else s.reported_accuracy / 100}
              for s in zoo.specs()]
    on = " / ".join(sorted(datasets)) or "no weights yet"
    return (plots.accuracy_vs_params(ours, title=f"Our weights: test accuracy on {on}",
                                     ylabel="test accuracy", figsize=(7, 4.5)),
            plots.accuracy_vs_params(theirs, title="As reported by each source (official test set)",
                                     ylabel="reported accuracy", figsize=(7, 4.5)))


# ------------------------------------------------------------------------------ latency


def measure_latency(runs: int = LATENCY_RUNS) -> dict[str, float]:
    """Batch-1 CPU forward latency of every zoo model, in ms (median of `runs`), cached.

    predict.measure_latency times freshly built models, so the Predict tab's cached ones are
    never touched from this thread.
    """
    global _latency_note
    with _lock:  # two visitors pressing the button at once would only slow each other down
        record = predict.measure_latency([s.name for s in zoo.specs()], runs=runs)
        _latency.update(record["latency_ms"])
        threads = record["threads"]
        _latency_note = (f"CPU latency: {predict.latency_method(record)} after {record['warmup']} "
                         f"warm-up passes, {threads} thread{'s' * (threads != 1)}, on this server. "
                         "Other work on the server (a training run) slows it down.")
    return dict(_latency)


def refresh() -> tuple[list[list[str]], str, Figure, Figure, str]:
    """Table, the line naming its test set, the two plots and the latency note, as the files
    are now (no measuring). Each card is read once."""
    cards = _cards()
    return (zoo_rows(cards), scored_on(cards), *accuracy_plots(cards),
            _latency_note or "CPU latency: not measured yet.")


def measure() -> tuple[list[list[str]], str]:
    """Measure every model's latency, then the table with it."""
    measure_latency()
    return zoo_rows(), _latency_note


def measure_once() -> tuple[list[list[str]], str]:
    """Measure on the first visit of the tab only; later visits show the cached figures."""
    with _lock:  # a second first visitor waits for the first one's figures
        if len(_latency) < len(zoo.names()):
            measure_latency()
    return zoo_rows(), _latency_note


# ------------------------------------------------------------------------------ layout


def build(ctx: AppContext, visitor: gr.BrowserState | None = None) -> None:
    """The tab; the zoo is the same for every visitor, `visitor` (the page's token) adds its runs."""
    token = [visitor] if visitor is not None else []
    with gr.Tab("Model zoo") as tab:
        gr.Markdown(INTRO)
        table = gr.Dataframe(value=zoo_rows(), headers=COLUMNS, interactive=False, wrap=True,
                             label="The zoo", column_widths=COLUMN_WIDTHS,
                             max_height=1000)  # all ten rows, no scrolling inside the table
        scored = gr.Markdown(scored_on())
        yours_md = gr.Markdown(your_note([]), elem_id="zoo-your-note")
        yours = gr.Dataframe(headers=YOUR_COLUMNS, interactive=False, wrap=True, label="Your runs",
                             elem_id="zoo-your-runs", max_height=400, column_widths=YOUR_WIDTHS)
        with gr.Row():
            note = gr.Markdown("CPU latency: measured when you open this tab.")
            button = gr.Button("Measure latency again", size="sm", scale=0, min_width=200)
        with gr.Row():
            ours = gr.Plot(label="Accuracy vs. size: our weights", show_label=False)
            theirs = gr.Plot(label="Accuracy vs. size: sources' reports", show_label=False)
        with gr.Accordion("Where each model comes from", open=True):
            gr.Markdown(origins_markdown())

        # Timing every model's forward passes: the "models" lane; the table and plots are only read.
        tab.select(refresh, None, [table, scored, ours, theirs, note], api_visibility="private", **FREE).then(
            ctx.bind(refresh_yours), token, [yours, yours_md, ours], api_visibility="private", **FREE).then(
            measure_once, None, [table, note], api_visibility="private", **MODELS)
        button.click(measure, None, [table, note], api_visibility="private", **MODELS)
