"""`inspect`: the Inside-the-network tab's pictures of one model and one picture, written to a folder.

    python -m cifar_demo inspect --model airnet photo.jpg --out inside/
    python -m cifar_demo inspect --run RUN_ID --epoch 2 photo.jpg --out inside/   # a saved epoch of a run
    python -m cifar_demo inspect --model airnet photo.jpg --out inside/ --favourites --map 1000

Writes index.md (what each file shows), architecture.md (one row per layer), input.png, one
stage_NN.png per stage, answer.png (logits and softmax), filters.png; with --favourites one
favourites_NN.png per stage (each channel's top-9 test patches), with --map map_tsne.png and
map_pca.png (the penultimate features of a class-balanced test slice).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CliError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text.split(" (")[0]).strip("_")[:40] or "stage"


def _model(args):
    """(model, classes, label, architecture, sha256 or None, data folder or None)."""
    from .. import runs, weights  # lazy: the CLI parses its flags without importing torch
    from ..analysis import inside_runs  # lazy: the CLI parses its flags without importing torch

    if bool(args.model) == bool(args.run):
        raise CliError("name one model: --model NAME_OR_FILE or --run RUN_ID")
    if args.run:
        run = runs.Run.find(args.run, args.runs_dir)
        cfg = run.config()
        if args.epoch is not None:
            epoch = inside_runs.nearest_epoch(run, args.epoch)
            return (inside_runs.snapshot_model(run, epoch), run.classes(), f"run {run.id}, epoch {epoch}",
                    cfg.model, None, cfg.data)
        loaded = weights.load(weights.ModelRef.run(run.dir))
        return loaded.model, loaded.classes, loaded.label, loaded.architecture, loaded.sha256, cfg.data
    if args.epoch is not None:
        raise CliError("--epoch needs --run (the epochs a run saved)")
    loaded = weights.load(weights.ModelRef.parse(args.model))
    return loaded.model, loaded.classes, loaded.label, loaded.architecture, loaded.sha256, args.data


def cmd_inspect(args) -> int:
    from PIL import Image  # lazy: the CLI parses its flags without importing torch

    from .. import data  # lazy: the CLI parses its flags without importing torch
    from ..analysis import embedding, inside, inside_topk  # lazy: the CLI parses its flags without importing torch
    from ..data import pictures  # lazy: the CLI parses its flags without importing torch
    from ..reporting import inside_draw, inside_map  # lazy: the CLI parses its flags without importing torch

    if args.map is not None and args.map not in embedding.SIZES:
        raise CliError(f"--map takes {', '.join(map(str, embedding.SIZES))} (test pictures)")
    try:
        image32 = pictures.thumbnail(args.image)
    except pictures.ImageError as exc:
        raise CliError(str(exc)) from None
    model, classes, label, arch, sha256, data_path = _model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    index = [f"# {label} on {Path(args.image).name}", ""]

    def save(name: str, picture, caption: str) -> None:
        Image.fromarray(picture).save(out / name)
        index.append(f"- `{name}`: {caption}")

    look = inside.look_inside(model, image32, classes)
    (top, p), *_ = look.top(1)
    index += [f"The model says **{top}** ({p:.1%}).", ""]
    rows = inside.architecture(model)
    table = ["| " + " | ".join(inside.TABLE_HEADERS) + " |", "|" + "---|" * len(inside.TABLE_HEADERS)]
    table += ["| " + " | ".join(str(c) for c in r.cells()) + " |" for r in rows]
    (out / "architecture.md").write_text(f"# {label}: the layers\n\n" + "\n".join(table) + "\n", encoding="utf-8")
    index.append("- `architecture.md`: every layer with its output shape, parameters, MACs and receptive field")
    save("input.png", inside_draw.input_tile(image32, 192), "the 32x32 picture the model sees")
    stages = look.map_stages
    for i, view in enumerate(stages, 1):
        picture, caption = inside_draw.stage_grid(view, args.channels)
        save(f"stage_{i:02d}_{_slug(view.name)}.png", picture, caption)
    inside_draw.answer_figure(look).savefig(out / "answer.png", dpi=100)
    index.append("- `answer.png`: the logits and the softmax")
    name, filters = inside.first_filters(model)
    save("filters.png", inside_draw.filters_grid(filters), f"the first layer's filters ({name})")

    if args.favourites or args.map is not None:
        if sha256 is None:
            raise CliError("--favourites and --map are cached per weights file: use them without --epoch")
        source = data.resolve_source(data_path, download=False)
    if args.favourites:
        split = inside_topk.test_slice(source, inside_topk.DEFAULT_N)
        tops, _ = inside_topk.favourites(model, arch, sha256, split)
        fields = inside.stage_fields(model)
        images = split.images.permute(0, 2, 3, 1).numpy()
        for i, (top_, view, field) in enumerate(zip(tops, stages, fields), 1):
            picture = inside_draw.favourites_grid(images, top_.index, top_.y, top_.x, top_.size, field,
                                                  view.order[:args.channels])
            save(f"favourites_{i:02d}_{_slug(view.name)}.png", picture,
                 f"{view.name}: each shown channel's 9 favourite test patches ({field}x{field} px)")
    if args.map is not None:
        split = data.stratified_subset(data.load_split("test", source), args.map, embedding.SEED)
        m, _ = embedding.embedding(model, arch, sha256, split)
        for method in embedding.METHODS:
            inside_map.map_figure(m, method, classes, f"{label}: {method.upper()}").savefig(
                out / f"map_{method}.png", dpi=100)
            index.append(f"- `map_{method}.png`: {len(m.labels):,} test pictures' penultimate features, {method}")
    (out / "index.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    print(f"{label}: {top} ({p:.1%}); wrote {len(list(out.iterdir()))} files to {out}")
    return 0
