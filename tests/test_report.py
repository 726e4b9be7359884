"""The zoo's generated Markdown: one table renderer, the README's short table and docs/zoo.md's
full table and provenance kept in step with the registry and the cards, provenance for every
model, and the one latency measurement behind every figure."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cifar_demo import weights, zoo
from cifar_demo.analysis import predict
from cifar_demo.reporting import report, tables

REPO = Path(__file__).resolve().parents[1]
REGENERATE = "python -m cifar_demo zoo --markdown README.md"
REGENERATE_DOCS = "python -m cifar_demo zoo --markdown docs/zoo.md"


def _between_markers(text: str, start: str = report.START, end: str = report.END) -> str:
    assert text.count(start) == 1 and text.count(end) == 1
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def _rows(table: str) -> dict[str, list[str]]:
    """A generated table's rows by model name, each as its stripped cells."""
    return {line.split(" | ")[0][3:-1]: [c.strip() for c in line.strip("|").split(" | ")]
            for line in table.splitlines() if line.startswith("| `")}


# ---------------------------------------------------------------------------- the renderer


def test_render_aligns_text_and_escapes_markdown():
    head, rows = ["name", "n"], [["a|b", "7"], ["long name", "1,234"]]
    text = tables.render(head, rows, right={1}).splitlines()
    assert text == ["name           n", "---------  -----", "a|b            7", "long name  1,234"]
    md = tables.render(head, rows, right={1}, fmt="markdown").splitlines()
    assert md == ["| name | n |", "|---|---:|", "| a\\|b | 7 |", "| long name | 1,234 |"]
    with pytest.raises(ValueError, match="2 cells"):
        tables.render(head, [["only one"]])
    with pytest.raises(ValueError, match="'text' or 'markdown'"):
        tables.render(head, rows, fmt="html")


# ---------------------------------------------------------------------------- README and docs/zoo.md


def test_readme_zoo_table_is_what_zoo_markdown_generates(monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)  # the shipped cards, as the CLI reads them
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert _between_markers(readme) == report.zoo_markdown(), f"README's zoo table is stale: run `{REGENERATE}`"
    assert report.DETAILS_START not in readme        # the provenance lives in docs/zoo.md only


def test_docs_zoo_block_is_what_zoo_details_markdown_generates(monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)
    docs = (REPO / "docs" / "zoo.md").read_text(encoding="utf-8")
    block = _between_markers(docs, report.DETAILS_START, report.DETAILS_END)
    assert block == report.zoo_details_markdown(), f"docs/zoo.md's zoo block is stale: run `{REGENERATE_DOCS}`"
    assert report.START not in docs                   # one home for the short table: the README


def test_readme_zoo_table_has_a_row_per_model_from_the_registry_and_its_card(monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)
    rows = _rows(_between_markers((REPO / "README.md").read_text(encoding="utf-8")))
    assert list(rows) == zoo.names()
    shipped = set(weights.available())
    latency = report.read_latency() or {"latency_ms": {}}
    for s in zoo.specs():
        cells = rows[s.name]
        assert cells[1:3] == [s.source, f"{s.params:,}"]
        if s.name in shipped:
            card = weights.card_for(s.name)
            assert cells[3:5] == [f"{100 * card.test_accuracy:.2f}%", f"{100 * card.test_accuracy_tta:.2f}%"]
        else:
            assert cells[3:5] == ["no weights yet", "-"]
        ms = latency["latency_ms"].get(s.name)
        assert cells[5] == ("-" if ms is None else f"{ms:.1f} ms")


def test_docs_zoo_table_has_a_row_per_model_from_the_registry_and_its_card(monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)
    docs = (REPO / "docs" / "zoo.md").read_text(encoding="utf-8")
    rows = _rows(_between_markers(docs, report.DETAILS_START, report.DETAILS_END))
    assert list(rows) == zoo.names()
    shipped = set(weights.available())
    for s in zoo.specs():
        cells = rows[s.name]
        assert cells[2:5] == [f"{s.params:,}", f"{s.macs / 1e6:,.1f}M",
                              "-" if s.reported_accuracy is None else f"{s.reported_accuracy:.2f}%"]
        if s.name in shipped:
            card = weights.card_for(s.name)
            assert cells[5] == f"{100 * card.test_accuracy:.2f}%"
            assert cells[7:9] == [str(card.epochs), f"{card.train_seconds / 60:.0f} min"]
        else:
            assert cells[5] == "no weights yet"
        assert cells[-1].endswith("(the source's)" if s.recipe_source == "source" else "(ours)")


def test_provenance_cites_every_model_and_each_shipped_weights_command(monkeypatch):
    monkeypatch.delenv("CIFAR_DEMO_WEIGHTS", raising=False)
    text = report.provenance_markdown()
    for s in zoo.specs():
        line = next(line for line in text.splitlines() if line.startswith(f"- `{s.name}` ({s.source}): "))
        if s.project is not None:
            assert f"*{s.project.title}*" in line and (s.project.url or "not published") in line
        assert f"Default recipe: {'the source' if s.recipe_source == 'source' else 'ours'}" in line
        assert s.recipe_note in line
    for name in weights.available():
        card = weights.card_for(name)
        line = next(line for line in text.splitlines() if line.startswith(f"- `{name}`: "))
        stages = card.extra.get("stages") or [{"train_config": card.train_config}]
        commands = [f"`{report.train_command(st['train_config'])}`" for st in stages]
        teach = report.distill_command(card)   # the last teachers' command (the file's name aside)
        # a stage taught by other teachers than the one before it reads its own file: TEACHERS2, ...
        same_file = re.sub(r"TEACHERS\d+\.safetensors", "TEACHERS.safetensors", line)
        taught_first = teach and (not card.extra.get("stages") or stages[0]["train_config"].get("distill"))
        first = "`python -m cifar_demo distill-targets " if taught_first else commands[0]
        assert same_file.startswith(f"- `{name}`: {first}") and all(c in same_file for c in commands)
        assert not teach or teach in same_file
        assert f"{card.epochs} epochs in {card.train_seconds / 60:.0f} min" in line


def test_continued_weights_show_each_stage_and_the_sum():
    from dataclasses import replace

    card = weights.card_for(weights.available()[0])
    first = {**card.train_config, "epochs": 50}
    second = {**card.train_config, "epochs": 10, "lr": 0.05, "init_from": card.model}
    hw = {"cpu": "AMD EPYC", "cores": 2, "gpu": None}
    staged = replace(card, epochs=60, train_seconds=3600.0 + 600.0, extra={"stages": [
        {"run_id": None, "epochs": 50, "train_seconds": 3600.0, "hardware": hw, "train_config": first},
        {"run_id": "r2", "epochs": 10, "train_seconds": 600.0, "hardware": hw, "train_config": second}]})
    line = report._how_made(staged)
    one, two = f"`{report.train_command(first)}`", f"`{report.train_command(second)}`"
    assert line.startswith(f"{one} (50 epochs in 60 min on AMD EPYC (2 cores)), then {two} (10 epochs in 10 min")
    assert "--init-from" in two and "60 epochs in 70 min in all" in line


def test_a_stage_started_from_the_previous_stages_file_shows_that_export():
    from dataclasses import replace

    card = weights.card_for(weights.available()[0])
    hw = {"cpu": "AMD EPYC", "cores": 2, "gpu": None}
    second = {**card.train_config, "epochs": 10, "init_from": card.model}
    third = {**card.train_config, "epochs": 10, "lr": 0.05, "init_from": "/work/long/stage2/x.safetensors"}
    staged = replace(card, extra={"stages": [
        {"epochs": 10, "train_seconds": 600.0, "hardware": hw, "train_config": card.train_config},
        {"epochs": 10, "train_seconds": 600.0, "hardware": hw, "train_config": second},
        {"epochs": 10, "train_seconds": 600.0, "hardware": hw, "train_config": third}]})
    line = report._how_made(staged)
    assert "/work/long" not in line
    three = report.train_command(third)
    assert f"--init-from PREVIOUS_STAGE/{card.model}.safetensors" in three
    assert f"--init-from {card.model} " in report.train_command(second) + " "
    export_prev = "`python -m cifar_demo export RUN_ID --out PREVIOUS_STAGE`"
    assert line.index(report.train_command(second)) < line.index(export_prev) < line.index(three)
    assert line.count(export_prev) == 1


def test_distilled_weights_show_how_their_teachers_targets_were_made():
    from dataclasses import replace

    card = weights.card_for(weights.available()[0])
    config = {**card.train_config, "data": "../shared/data/cifar10-jpeg", "val_size": 5000, "seed": 0,
              "distill": "/somewhere/on/that/machine.safetensors", "distill_weight": 0.5}
    meta = {"teachers": [{"name": "airnet"}, {"name": "resnet18"}], "tta": "flip", "seconds": 660.0,
            "hardware": {"cpu": "AMD EPYC", "cores": 2}}
    line = report._how_made(replace(card, train_config=config, extra={"distillation": meta}))
    assert line.startswith("`python -m cifar_demo distill-targets --teachers airnet,resnet18 --data "
                           "../shared/data/cifar10-jpeg --out TEACHERS.safetensors` (11 min on AMD EPYC (2 cores)), "
                           "then `python -m cifar_demo train --preset ")
    assert "--distill TEACHERS.safetensors" in line and "/somewhere" not in line
    assert report.distill_command(replace(card, extra={})) is None
    # continued with the teachers: their command comes right before the stage that used them
    stages = [{"epochs": 16, "train_seconds": 600.0, "train_config": card.train_config},
              {"epochs": 4, "train_seconds": 60.0, "train_config": config}]
    line = report._how_made(replace(card, train_config=config, extra={"distillation": meta, "stages": stages}))
    assert line.index(report.train_command(card.train_config)) < line.index("distill-targets") < \
        line.index("--distill TEACHERS.safetensors")


def test_stages_taught_by_different_teachers_each_show_their_own_targets_file():
    from dataclasses import replace

    card = weights.card_for(weights.available()[0])
    hw = {"cpu": "AMD EPYC", "cores": 2, "gpu": None}
    taught = {**card.train_config, "data": "../shared/data/cifar10-jpeg", "val_size": 5000, "seed": 0,
              "distill": "/that/machine/teach3.safetensors"}
    again = {**taught, "init_from": card.model, "epochs": 12, "distill": "/that/machine/teach4.safetensors"}
    old = {"teachers": [{"name": "airnet", "sha256": "a1"}, {"name": "resnet18", "sha256": "b1"}], "seconds": 660.0}
    new = {"teachers": [{"name": "airnet", "sha256": "a1"}, {"name": "resnet18", "sha256": "b2"}], "seconds": 162.0}
    stages = [{"epochs": 45, "train_seconds": 600.0, "hardware": hw, "train_config": taught, "distillation": old},
              {"epochs": 12, "train_seconds": 60.0, "hardware": hw, "train_config": again, "distillation": new}]
    line = report._how_made(replace(card, train_config=again, extra={"distillation": new, "stages": stages}))
    first, second = report.train_command(taught), report.train_command(again, "TEACHERS2.safetensors")
    assert "--distill TEACHERS.safetensors" in first and "--distill TEACHERS2.safetensors" in second
    assert line.count("distill-targets") == 2 and "/that/machine" not in line
    assert (line.index("--out TEACHERS.safetensors` (11 min") < line.index(first)
            < line.index("--out TEACHERS2.safetensors` (3 min") < line.index(second))
    # the same teachers in both stages (or a card from before stages kept their own): one file
    same = [{**st, "distillation": old} for st in stages]
    for extra in ({"distillation": old, "stages": same},
                  {"distillation": old, "stages": [{k: v for k, v in st.items() if k != "distillation"}
                                                   for st in stages]}):
        line = report._how_made(replace(card, train_config=again, extra=extra))
        assert line.count("distill-targets") == 1 and "TEACHERS2" not in line
        assert line.index("distill-targets") < line.index(first)


def test_a_continued_stage_keeps_the_teachers_of_the_stage_it_started_from(tmp_path):
    from types import SimpleNamespace

    from cifar_demo.reporting import export
    from cifar_demo.train import TrainConfig

    model = zoo.create("simple_cnn").eval()
    old = {"teachers": [{"name": "airnet", "sha256": "a1"}], "seconds": 660.0}
    path, _ = weights.save_weights(model, tmp_path, "simple_cnn", dataset="CIFAR-10", dataset_fingerprint="x",
                                   test_accuracy=0.5, test_accuracy_tta=None,
                                   per_class_accuracy=dict.fromkeys(predict.CLASSES, 0.5),
                                   train_config={"model": "simple_cnn", "distill": "/gone/teach3.safetensors"},
                                   epochs=45, train_seconds=600.0, extra={"distillation": old})
    cfg = TrainConfig(model="simple_cnn", init_from=str(path), distill=str(tmp_path / "gone.safetensors"))
    summary = {"epochs_run": 12, "elapsed_s": 60.0, "hardware": {"cpu": "x"}}
    epochs, seconds, stages = export.training_stages(SimpleNamespace(id="r2"), cfg, summary, predict.CLASSES)
    assert (epochs, seconds) == (57, 660.0)
    assert stages[0]["distillation"] == old          # the source card's teachers, on its stage
    assert stages[1]["distillation"]["file"] == str(tmp_path / "gone.safetensors")   # this run's (file gone)
    assert export.card_extra(cfg, stages) == {"stages": stages, "distillation": stages[1]["distillation"]}
    assert export.card_extra(TrainConfig(model="simple_cnn", distill=cfg.distill), None) == \
        {"distillation": stages[1]["distillation"]}
    # nothing distilled before: the first stage carries no teachers
    plain, _ = weights.save_weights(model, tmp_path / "b", "simple_cnn", dataset="CIFAR-10", dataset_fingerprint="x",
                                    test_accuracy=0.5, test_accuracy_tta=None,
                                    per_class_accuracy=dict.fromkeys(predict.CLASSES, 0.5),
                                    train_config={"model": "simple_cnn"}, epochs=45, train_seconds=600.0)
    cfg = TrainConfig(model="simple_cnn", init_from=str(plain), distill=str(tmp_path / "gone.safetensors"))
    stages = export.training_stages(SimpleNamespace(id="r2"), cfg, summary, predict.CLASSES)[2]
    assert "distillation" not in stages[0] and "distillation" in stages[1]


def test_provenance_without_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEMO_WEIGHTS", str(tmp_path))
    text = report.provenance_markdown()
    assert text.endswith("- no weights shipped yet") and "`quiz_dnn` (QuizDNN)" in text


def test_write_table_replaces_only_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    assert report.write_table(readme, "| new |") is True
    assert readme.read_text() == f"intro\n{report.START}\n| new |\n{report.END}\noutro\n"
    assert _between_markers(readme.read_text()) == "| new |"
    other = tmp_path / "table.md"
    assert report.write_table(other, "| t |") is False and other.read_text() == "| t |\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "table.md"]  # no temp files


def test_write_blocks_fills_each_block_the_file_has(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "BLOCKS", {"zoo-table": (report.START, report.END, lambda: "| short |"),
                                           "zoo-details": (report.DETAILS_START, report.DETAILS_END,
                                                           lambda: "| long |")})
    readme, docs, both = tmp_path / "README.md", tmp_path / "zoo.md", tmp_path / "both.md"
    readme.write_text(f"a\n{report.START}\nold\n{report.END}\nb\n")
    docs.write_text(f"c\n{report.DETAILS_START}\nold\n{report.DETAILS_END}\nd\n")
    both.write_text(readme.read_text() + docs.read_text())
    assert report.write_blocks(readme) == ["zoo-table"] and _between_markers(readme.read_text()) == "| short |"
    assert report.write_blocks(docs) == ["zoo-details"]
    assert docs.read_text() == f"c\n{report.DETAILS_START}\n| long |\n{report.DETAILS_END}\nd\n"
    assert report.write_blocks(both) == ["zoo-table", "zoo-details"] and "old" not in both.read_text()


def test_latency_file_is_the_repositorys_docs_latency_json():
    assert report.LATENCY_FILE == REPO / "docs" / "latency.json" and report.read_latency() is not None


# ---------------------------------------------------------------------------- latency


def test_one_latency_measurement_says_how_it_was_taken():
    record = predict.measure_latency(["optimized200k"], runs=3, warmup=1)
    assert set(record["latency_ms"]) == {"optimized200k"} and record["latency_ms"]["optimized200k"] > 0
    assert (record["batch"], record["precision"], record["runs"], record["warmup"]) == (1, "fp32", 3, 1)
    assert record["threads"] == torch.get_num_threads()
    assert predict.latency_method(record) == "one 32x32 image (batch 1, fp32), median of 3 forward passes"


def test_report_writes_the_measurement_with_the_machine(tmp_path, monkeypatch):
    fake = {"batch": 1, "precision": "fp32", "runs": 4, "warmup": 2, "threads": 2,
            "latency_ms": {"airnet": 2.3456}}
    calls = []
    monkeypatch.setattr(predict, "measure_latency", lambda **kw: calls.append(kw) or json.loads(json.dumps(fake)))
    path = tmp_path / "docs" / "latency.json"
    record = report.measure_latency(path, runs=4)
    assert calls == [{"runs": 4}]                      # report times nothing itself
    assert json.loads(path.read_text()) == record and record["latency_ms"] == {"airnet": 2.35}
    assert record["command"] == report.LATENCY_COMMAND and record["hardware"]["cores"] >= 1
    note = report.latency_note(record)
    assert note.startswith("CPU latency: one 32x32 image (batch 1, fp32), median of 4 forward passes, measured by")
    assert report.read_latency(path) == record
