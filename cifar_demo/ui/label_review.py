"""The Evaluate tab's view of the test set's own label errors (data.label_errors).

Three hooks into evaluate_tab (captions of the mistakes gallery and the drill-down, a sentence
in the drill-down's comparison and one in the summary) and one section of its own, "Mislabelled?":
every shipped model on the 54 pictures whose label the reviewers rejected, and which of each
model's "mistakes" are really the label's. CIFAR-10's test set only: elsewhere it says why not.
"""

from __future__ import annotations

import html
import time

import gradio as gr

from .. import augment, data
from ..analysis import label_check
from ..common import CLASSES
from ..data import label_errors
from .context import FREE, MODELS

THUMB_SCALE = 3
FLAG = "⚑"   # marks a picture whose label the reviewers rejected, wherever it is shown


def flagged_for(source: data.DataSource | None) -> dict[int, label_errors.Flag]:
    """Test index -> Flag for the 54 label errors, {} where the reviewed labels do not apply."""
    return label_errors.index_map(source) if source is not None else {}


def mark(items: list[tuple], indices, source: data.DataSource | None) -> list[tuple]:
    """Gallery items (image, caption) for test `indices`, a flagged picture's caption extended
    with what the reviewers said ("⚑ label? 5/5: frog")."""
    flagged = flagged_for(source)
    if not flagged:
        return items
    return [(img, f"{cap} {FLAG} {flagged[i].short()}" if i in flagged else cap)
            for (img, cap), i in zip(items, indices)]


def note_html(state: dict | None, index: int) -> str:
    """A line for the drill-down's comparison of test image `index`: what the reviewers said."""
    if not state or state["target"].class_names != CLASSES:
        return ""
    f = flagged_for(state["source"]).get(index)
    if f is None:
        return ""
    return (f'<div style="margin:0 0 10px 0;padding:6px 10px;border-left:4px solid #f59e0b">'
            f"{FLAG} <b>Label in doubt</b>: {html.escape(f.describe())} (official test index "
            f"{f.official_index}, <code>{f.export_path}</code>).<br><small>{html.escape(label_errors.ATTRIBUTION)}"
            "</small></div>")


def summary_note(res, source: data.DataSource) -> str:
    """A paragraph for the Evaluate summary: the accuracy with the reviewers' majority labels."""
    if tuple(source.classes) != CLASSES:
        return ""   # own images: the section below says that the reviewed labels are CIFAR-10's only
    flagged = flagged_for(source)
    if not flagged:
        return ""
    r = label_check.rescore(res.labels, res.predictions, flagged)
    return (f"\n\n{FLAG} **With the reviewers' labels**: {r.accuracy_majority:.2%} (as labelled {r.accuracy:.2%}); "
            f"{len(r.label_mistakes)} of its mistakes are really the label's. See **Mislabelled?** below.")


# ----------------------------------------------------------------------------- the section

INTRO = (
    "### Mislabelled? The test set's own errors\n"
    "Five human reviewers looked at 275 CIFAR-10 test pictures whose label a cleaning method "
    "doubted; for 54 of them fewer than 3 of 5 kept the given label, and for 18 of those 3 or more chose "
    "another class. Those pictures are marked " + FLAG + " in the galleries above. The button scores every "
    "shipped model on the 54 pictures: a ✓ where a model's \"mistake\" is the reviewers' majority label (the "
    "mistake is really the label's), a ? where it answers the proposed class but the reviewers agreed on "
    "no class. " + label_errors.SCOPE + " " + label_errors.ATTRIBUTION)


def _source() -> data.DataSource:
    try:
        return data.resolve_source(download=False)
    except data.DataSourceError as e:
        raise gr.Error(f"No test data to check. {e}") from None


def review(state: dict | None = None) -> tuple[str, dict, list[tuple]]:
    """(summary markdown, table, gallery) of every shipped model on the label errors of the test set
    (the evaluated one's own, TTA included, when an evaluation of CIFAR-10 is open)."""
    source = state["source"] if state else _source()
    why = label_errors.not_applicable(source)
    if why:
        return f"{FLAG} {why}", gr.update(value=None), []
    flagged = flagged_for(source)
    test = data.load_split("test", source)
    order = sorted(flagged)
    t0 = time.perf_counter()
    answers = label_check.shipped_answers(test.images[order])
    failed = {k: v for k, v in answers.items() if isinstance(v, str)}
    answers = {k: v for k, v in answers.items() if not isinstance(v, str)}
    seconds = time.perf_counter() - t0
    labels = test.labels.numpy()
    lines = []
    if state and state["target"].class_names == CLASSES:
        res = state["result"]
        r = label_check.rescore(res.labels, res.predictions, flagged)
        lines.append(f"**{state['target'].label}** (TTA `{res.tta}`, the whole test set): {r.sentence()}")
    majority = [j for j, i in enumerate(order) if flagged[i].majority is not None]
    lines += [f"Every shipped model on the {len(order)} pictures of this test set whose label the reviewers rejected "
              f"({len(majority)} of them with a majority for another class; no TTA, {seconds:.1f} s):", "",
              "| model | answers the reviewers' majority label (its \"mistake\" is the label's) "
              "| answers the rejected label |", "|---|---:|---:|"]
    for name, a in answers.items():
        backed = sum(a[j] == flagged[order[j]].majority for j in majority)
        kept = sum(a[j] == flagged[order[j]].given for j in range(len(order)))
        lines.append(f"| `{name}` | {backed} of {len(majority)} | {kept} of {len(order)} |")
    lines += [f"\n`{k}`: {v}" for k, v in failed.items()]
    headers = ["test index", "label", "the reviewers", *answers]
    rows = label_check.mislabelled_rows(flagged, labels, answers)
    gallery = [(augment.upscale_nearest(test.images[i].permute(1, 2, 0).numpy(), THUMB_SCALE),
                f"#{i} {CLASSES[flagged[i].given]}: {flagged[i].short()}") for i in order]
    return "\n".join(lines), gr.update(value=rows, headers=headers), gallery


def build(drill: gr.State) -> None:
    """The section, under the drill-down; `drill` is the Evaluate tab's state of its last evaluation."""
    gr.Markdown(INTRO, elem_id="label-review-intro")
    go = gr.Button("Who is right: the label or the models?", elem_id="label-review-go")
    summary = gr.Markdown("", elem_id="label-review-summary")
    table = gr.Dataframe(label="The pictures whose label the reviewers rejected: each model's answer",
                         interactive=False, max_height=420, elem_id="label-review-table")
    pictures = gr.Gallery(label="The same pictures (test index, label, the reviewers)", columns=9,
                          height="max-content", object_fit="contain", allow_preview=True, fit_columns=False,
                          format="png")
    go.click(review, [drill], [summary, table, pictures], **MODELS)
    drill.change(lambda s: "" if s is None else (label_errors.not_applicable(s["source"]) or ""),
                 drill, summary, **FREE)
