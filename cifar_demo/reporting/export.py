"""A finished run -> weights/<name>.safetensors + weights/<name>.json (the model card).

A run on CIFAR-10 exports under its model's name (weights/airnet.*, what the app and the Hub
look for). A run on other classes exports under `<model>-<dataset name>` (export_name) or a
name the caller gives, never under a zoo model's name: the shipped CIFAR-10 weights cannot be
overwritten by weights that predict other classes. Its card records the classes and the zoo
architecture (ModelCard.classes, .architecture).

The same export also makes a one-file download (export_download: a .zip of the pair in a
temporary folder; run_download: kept in the run's own directory, so a run's download is scored
once and deleted with the run) and a push to the Hugging Face Hub (push_run); neither writes weights/.

A run that continued trained weights of the same classes (TrainConfig.init_from, head kept) is
the last stage of one training: its card's epochs and train_seconds count every stage, and its
"stages" list says what each was (training_stages). A fine-tune with a new head is a new model
and counts its own run.

The test set is scored here, once per export, with the exact tensors that are stored (fp16
storage is rounded before scoring), with and without test-time augmentation. fp16 storage is
refused where it moves test accuracy by more than 0.05 points against the fp32 weights.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from .. import data as data_mod
from .. import weights, zoo
from ..analysis import evaluate
from ..common import CLASSES
from ..train import Run
from ..train.distill import DistillError, read_meta
from ..weights import hub

SLICE_N = 1000
# fp16 storage halves a file; it is kept only where it moves test accuracy by at most this much
# (0.05 points: 5 of the 10,000 test images).
FP16_TOLERANCE = 0.0005


def test_slice(n_test: int) -> dict:
    """The fixed test slice every card records and CI re-scores: 1,000 images spread evenly
    (every 10th of the 10,000), so it is class-balanced even where the test set is sorted by
    class (ImageFolder exports). Smaller test sets are scored whole."""
    step = max(1, n_test // SLICE_N)
    return {"start": 0, "n": min(SLICE_N, n_test // step), "step": step}
TTA = "flip_translate"


def check_fp16(accuracy_fp32: float, accuracy_fp16: float) -> None:
    """Refuse fp16 storage that changes the test accuracy by more than FP16_TOLERANCE."""
    moved = abs(accuracy_fp16 - accuracy_fp32)
    if moved > FP16_TOLERANCE + 1e-12:
        raise ValueError(f"float16 storage moves test accuracy from {100 * accuracy_fp32:.2f}% to "
                         f"{100 * accuracy_fp16:.2f}% ({100 * moved:.2f} points, more than "
                         f"{100 * FP16_TOLERANCE:.2f}); export with --dtype float32")


def training_stages(run: Run, cfg, summary: dict, classes) -> tuple[int, float, list[dict] | None]:
    """(epochs, train_seconds, stages) for the run's card.

    Without init_from, or from weights of other classes: the run's own epochs and seconds, no
    stages. Continuing weights of the same classes: the source card's stages (or the source card
    itself as the first) and this run as the last; epochs and seconds are their sums. A stage is
    {run_id, epochs, train_seconds, hardware, train_config}, plus the sha256 and test accuracy of
    the weights it produced where a card recorded them, and for a distilled stage its teachers
    ("distillation", as card_extra), so that stages taught by different teachers say so.
    Exporting the same run again replaces its own stage instead of counting it twice."""
    this = {"run_id": run.id, "epochs": summary["epochs_run"], "train_seconds": summary["elapsed_s"],
            "hardware": summary.get("hardware"), "train_config": cfg.to_dict()}
    if not cfg.init_from:
        return this["epochs"], this["train_seconds"], None

    src = weights.card_of(cfg.init_from)
    if tuple(src.class_names) != tuple(classes):
        return this["epochs"], this["train_seconds"], None
    before = [dict(s) for s in src.extra.get("stages") or [{
        "run_id": None, "epochs": src.epochs, "train_seconds": src.train_seconds, "hardware": src.hardware,
        "train_config": src.train_config, "sha256": src.sha256, "test_accuracy": src.test_accuracy}]]
    # The source card's teachers belong to its last distilled stage (cards written before stages
    # kept their own record name them only at the top).
    taught = [s for s in before if s["train_config"].get("distill")]
    if taught and "distillation" not in taught[-1] and src.extra.get("distillation"):
        taught[-1]["distillation"] = src.extra["distillation"]
    if cfg.distill:
        this["distillation"] = distillation_record(cfg)
    stages = [s for s in before if s.get("run_id") != run.id] + [this]
    return sum(s["epochs"] for s in stages), sum(s["train_seconds"] for s in stages), stages


def card_extra(cfg, stages) -> dict | None:
    """The card's extra keys: the stages of a continued run; for a distilled run, the teachers
    (names, sha256, validation accuracies) and the pass that made their targets, from the targets
    file's header (train.distill), or its path alone if the file is gone."""
    extra = {"stages": stages} if stages else {}
    if cfg.distill:   # a staged run's last stage already holds its record (training_stages)
        extra["distillation"] = stages[-1]["distillation"] if stages else distillation_record(cfg)
    return extra or None


def distillation_record(cfg) -> dict:
    """A distilled run's teachers (names, sha256, validation accuracies) and the pass that made
    their targets, from the targets file's header (train.distill), or its path alone if the
    file is gone."""

    try:
        return {k: v for k, v in read_meta(cfg.distill).items() if k != "format"}
    except DistillError:
        return {"file": str(cfg.distill), "note": "the targets file was not found at export"}


def export_name(run_id: str | Path, runs_dir=None) -> str:
    """The name a run exports under by default: its model's for CIFAR-10's classes, else
    `<model>-<dataset name>` (the dataset's name made safe as a file name)."""
    run = Run.find(run_id, runs_dir)
    model = run.config().model
    if run.classes() == CLASSES:
        return model
    described = (run.dataset_description() or {}).get("name") or "own"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", described).strip("-._") or "own"
    return f"{model}-{slug}"


def check_export_name(name: str, classes) -> None:
    """ValueError where weights of other classes would take a zoo model's name (and so replace,
    or pass for, its shipped CIFAR-10 weights); WeightsError for a name unsafe as a file name."""
    weights.check_name(name)
    if tuple(classes) != CLASSES and name in zoo.names():
        raise ValueError(f"{name!r} is the name of a shipped CIFAR-10 model; weights of the classes "
                         f"{', '.join(classes)} must be exported under another name (e.g. {name}-mine)")


def export_run(run_id: str | Path, *, runs_dir=None, out_dir=None, dtype: str = "float32",
               data: str | None = None, device=None, name: str | None = None):
    """Score the run's best weights on the test set and write weights + card as `name` (default
    export_name: the model's, or `<model>-<dataset>` for other classes). Returns
    (weights_path, card_path, card)."""
    run = Run.find(run_id, runs_dir)
    cfg, summary = run.config(), run.summary()
    if summary is None:
        raise FileNotFoundError(f"run {run.id} has not finished (no {run.summary_path.name}); "
                                f"resume it with `python -m cifar_demo train --resume {run.id}`")
    classes = run.classes()
    name = name or export_name(run.dir)
    check_export_name(name, classes)

    def as_stored(state: dict) -> dict:
        # Score what will be stored: with fp16 storage, round floating tensors through fp16 first.
        if dtype != "float16":
            return state
        return {k: (v.half().to(v.dtype) if v.is_floating_point() else v) for k, v in state.items()}

    state = weights.read_run_state(run)  # verified against the digest the run recorded
    model = weights.model_from_state(as_stored(state), cfg.model, classes, cfg.model_kwargs, f"run {run.id}")

    source = data_mod.resolve_source(data or cfg.data, download=False)
    if tuple(source.classes) != classes:
        raise ValueError(f"run {run.id} predicts {', '.join(classes)}; {source.label} has the classes "
                         f"{', '.join(source.classes)}: score it on its own dataset")
    test = data_mod.load_split("test", source)
    kw = dict(device=device, num_classes=len(classes))
    plain = evaluate.evaluate(model, test, **kw)
    if dtype == "float16":
        full = weights.model_from_state(state, cfg.model, classes, cfg.model_kwargs, f"run {run.id}")
        check_fp16(evaluate.evaluate(full, test, **kw).accuracy, plain.accuracy)
    tta = evaluate.evaluate(model, test, tta=TTA, **kw)
    slice_check = test_slice(len(test))
    sliced = evaluate.evaluate(model, data_mod.subset(test, weights.slice_indices(slice_check)), **kw)

    epochs, seconds, stages = training_stages(run, cfg, summary, classes)
    out_dir = Path(out_dir) if out_dir else weights.weights_dir()
    weights_path, card_path = weights.save_weights(
        model, out_dir, name,
        dataset=source.label, dataset_fingerprint=source.fingerprint,
        test_accuracy=plain.accuracy, test_accuracy_tta=tta.accuracy,
        per_class_accuracy=dict(zip(classes, plain.recall)), classes=list(classes), architecture=cfg.model,
        train_config=cfg.to_dict(), epochs=epochs, train_seconds=seconds,
        hardware=summary.get("hardware"), dtype=dtype, extra=card_extra(cfg, stages),
        slice_check={**slice_check, "accuracy": sliced.accuracy}, test_digest=data_mod.split_digest(test),
    )
    return weights_path, card_path, weights.ModelCard.load(card_path)


def export_download(run_id: str | Path, runs_dir=None, dest: str | Path | None = None, *,
                    name: str | None = None, dtype: str = "float32", data: str | None = None,
                    device=None) -> Path:
    """The run exported (scored, carded: export_run) into one downloadable file,
    <dest>/<name>.zip holding <model>.safetensors and <model>.json. Returns its path.

    dest: a folder (default: a new temporary one, which the caller removes when it is done);
    name: the zip's name (default: export_name, the run's model for CIFAR-10). Inside, the files
    keep export_name's name, which is what weights/, verify() and the Hub look for. Nothing
    under weights/ is written.
    """
    stem = name or export_name(run_id, runs_dir)
    weights.check_name(stem)
    dest = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="cifar-demo-download-"))
    staging = Path(tempfile.mkdtemp(prefix="cifar-demo-export-"))
    try:
        weights_path, card_path, _ = export_run(run_id, runs_dir=runs_dir, out_dir=staging, dtype=dtype,
                                                data=data, device=device)
        return weights.write_weights_zip(weights_path, card_path, dest / f"{stem}.zip")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


DOWNLOAD_DIR = "download"   # <run dir>/download/<best weights' digest>/<name>.zip (run_download)


def run_download(run_id: str | Path, runs_dir=None) -> Path:
    """The run's download (export_download's zip), built once and kept with the run in
    <run dir>/DOWNLOAD_DIR/<key>/, where <key> names the best weights it holds (their sha256, else
    their size and time): a second call returns the same file without scoring the test set again,
    and a run that trained on (a resume) gets a new one, the old one deleted. It lives and dies
    with the run's directory (in public mode, the visitor's folder)."""
    run = Run.find(run_id, runs_dir)
    if not run.has_best():
        raise FileNotFoundError(f"run {run.id} has no best weights yet: nothing to download")
    digests = run.best_digests()
    stat = run.best_path.stat()
    key = digests[0][:16] if digests else f"{stat.st_size}-{stat.st_mtime_ns}"
    root = run.dir / DOWNLOAD_DIR
    made = sorted((root / key).glob("*.zip")) if (root / key).is_dir() else []
    if made:
        return made[0]
    building = Path(tempfile.mkdtemp(prefix=".building-", dir=_made_dir(root)))
    try:
        path = export_download(run.dir, dest=building)
        shutil.rmtree(root / key, ignore_errors=True)
        building.replace(root / key)   # whole: a reader never sees half a folder
    finally:
        shutil.rmtree(building, ignore_errors=True)
    for old in root.iterdir():   # an earlier best's download
        if old.name != key and not old.name.startswith(".building-"):
            shutil.rmtree(old, ignore_errors=True)
    return root / key / path.name


def _made_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def push_run(run_id: str | Path, repo: str, *, token: str | None = None, runs_dir=None,
             private: bool = False, dtype: str = "float32", data: str | None = None, device=None,
             readme: bool = True, folder: str = "") -> weights.PushResult:
    """Export the run into a temporary folder and push <model>.safetensors + <model>.json (and a
    README.md page) to the Hugging Face Hub repo `repo` (created if missing) in one commit.

    token: default HF_TOKEN, else the saved `hf auth login` token; it never appears in a message.
    The repo id and the token are checked before the (slow) export, so a mistake costs nothing.
    folder: a sub-folder of the repo (see weights.push_files).
    """
    hub.check_repo_id(repo)
    token = hub.resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="cifar-demo-push-") as tmp:
        weights_path, card_path, _ = export_run(run_id, runs_dir=runs_dir, out_dir=tmp, dtype=dtype,
                                                data=data, device=device)
        return weights.push_files(weights_path, card_path, repo, token=token, private=private,
                                  readme=readme, commit_message=f"cifar-demo push: run {Path(run_id).name}",
                                  folder=folder)
