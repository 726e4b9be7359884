"""Shipped weights: safetensors files plus a JSON model card, verified by sha256.

    weights/<model>.safetensors   the state_dict (parameters, frozen ones included, and buffers)
    weights/<model>.json          the ModelCard: what was trained on which data, how well it
                                  scored, on what machine, and the sha256 of the weights file

Loading hashes the weights file and compares with the card before parsing any tensor,
then refuses a file whose keys or shapes do not fit the architecture. Nothing shipped is
unpickled: weights are safetensors only; training checkpoints (our own files) go through
torch.load(weights_only=True).

Missing locally, a model's two files are fetched from the project's Hugging Face Hub repo:
the HF cache first (no network), then online unless HF_HUB_OFFLINE=1.

Card schema policy: unknown keys in a loaded card are KEPT (in ModelCard.extra) and written
back on save, so a card from a newer release survives a load/save round trip; a card whose
schema_version is newer than CARD_SCHEMA_VERSION is refused, because its known fields may
have changed meaning. Accuracies are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import platform
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save_file
from torch import nn

import cifar_demo
from cifar_demo.common import CLASSES, pick_device

CARD_SCHEMA_VERSION = 1
STORAGE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16}
# safetensors' own dtype names, as safe_open reports them.
_SAFETENSORS_DTYPE = {"float32": "F32", "float16": "F16"}
# The project's repo on the Hugging Face Hub that mirrors weights/ (override: CIFAR_DEMO_HUB_REPO).
DEFAULT_HUB_REPO = "cifar-demo/weights"
# A model name becomes a file name and a Hub file name: keep it to a safe alphabet.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_SHOW_KEYS = 5  # how many offending keys an error message lists


class WeightsError(Exception):
    """A weights file or model card is missing, corrupt, or does not fit the model."""


# ---------------------------------------------------------------------------- places, machine

def weights_dir() -> Path:
    """The folder of shipped weights: $CIFAR_DEMO_WEIGHTS, else weights/ beside the package."""
    env = os.environ.get("CIFAR_DEMO_WEIGHTS")
    return Path(env) if env else Path(cifar_demo.__file__).resolve().parent.parent / "weights"


def hub_repo() -> str:
    """The Hugging Face Hub repo id that weights are fetched from when not in weights_dir()."""
    return os.environ.get("CIFAR_DEMO_HUB_REPO") or DEFAULT_HUB_REPO


def hardware_info() -> dict[str, Any]:
    """{"cpu": model name, "cores": usable logical CPUs, "gpu": name or None} of this machine."""
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        gpu = "Apple MPS"
    # Affinity, not os.cpu_count(): a container sees the host's count but may run on fewer.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": _cpu_model(), "cores": cores, "gpu": gpu}


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


# ---------------------------------------------------------------------------- the model card

@dataclass
class ModelCard:
    """Everything a reader of weights/<model>.json needs to trust and reproduce the weights."""

    model: str                            # zoo name
    params: int                           # trainable + frozen parameters (not buffers)
    dataset: str                          # "CIFAR-10 (JPEG export)" or "CIFAR-10 (official)"
    dataset_fingerprint: str              # fingerprint of the source files the run read
    test_accuracy: float                  # fraction in [0, 1]
    test_accuracy_tta: float | None       # with test-time augmentation; None if not measured
    per_class_accuracy: dict[str, float]  # class name -> fraction
    train_config: dict[str, Any]          # TrainConfig.to_dict()
    epochs: int                           # epochs actually run
    train_seconds: float                  # training wall time
    hardware: dict[str, Any]              # hardware_info() of the training machine
    torch_version: str
    project_version: str
    date: str                             # ISO 8601, UTC
    dtype: str                            # storage dtype: "float32" or "float16"
    sha256: str                           # of the .safetensors file
    slice_check: dict[str, Any] | None = None  # {"start", "n": 1000, "step", "accuracy"} for CI
    test_digest: str | None = None        # data.split_digest() of the test split it was scored on
    schema_version: int = CARD_SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim

    def to_dict(self) -> dict[str, Any]:
        d = {"schema_version": self.schema_version}
        d.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.name not in ("schema_version", "extra")})
        d.update(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        """Raises ValueError on missing fields or a schema newer than this code."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        required.add("schema_version")
        missing = sorted(required - d.keys())
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}")
        if not isinstance(d["schema_version"], int) or d["schema_version"] > CARD_SCHEMA_VERSION:
            raise ValueError(f"model card schema_version {d['schema_version']!r} is newer than this "
                             f"cifar_demo understands ({CARD_SCHEMA_VERSION}); upgrade cifar_demo")
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    def to_json(self) -> str:
        # allow_nan=False: NaN/Infinity are not JSON and would break other readers of the card.
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError("model card is not a JSON object")
        return cls.from_dict(d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (temp file beside it, then rename)."""
        path = Path(path)
        text = self.to_json()
        with _temp_beside(path) as tmp:
            tmp.write_text(text)
            _fsync(tmp)
            _publish(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        """Read a card; WeightsError naming the file if it is missing or malformed."""
        path = Path(path)
        try:
            return cls.from_json(path.read_text())
        except (OSError, ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
            raise WeightsError(f"{path}: unreadable model card: {e}") from e

    def validate(self) -> list[str]:
        """Problems with the card's values (empty list: fine)."""
        p: list[str] = []
        if not _NAME_RE.match(str(self.model)):
            p.append(f"model name {self.model!r} is not a safe file name")
        if not isinstance(self.params, int) or self.params <= 0:
            p.append(f"params {self.params!r} is not a positive integer")
        if not self.dataset or not self.dataset_fingerprint:
            p.append("dataset and dataset_fingerprint must be set")
        if not _is_fraction(self.test_accuracy):
            p.append(f"test_accuracy {self.test_accuracy!r} is not in [0, 1]")
        if self.test_accuracy_tta is not None and not _is_fraction(self.test_accuracy_tta):
            p.append(f"test_accuracy_tta {self.test_accuracy_tta!r} is not in [0, 1]")
        pca = self.per_class_accuracy
        if not isinstance(pca, dict) or set(pca) != set(CLASSES) or not all(map(_is_fraction, pca.values())):
            p.append("per_class_accuracy must map each CIFAR-10 class to a fraction in [0, 1]")
        if not isinstance(self.train_config, dict):
            p.append("train_config is not a dict")
        if not isinstance(self.epochs, int) or self.epochs < 0:
            p.append(f"epochs {self.epochs!r} is not a non-negative integer")
        if not isinstance(self.train_seconds, (int, float)) or self.train_seconds < 0:
            p.append(f"train_seconds {self.train_seconds!r} is not a non-negative number")
        if not isinstance(self.hardware, dict) or not {"cpu", "cores", "gpu"} <= self.hardware.keys():
            p.append("hardware must have cpu, cores and gpu")
        try:
            datetime.fromisoformat(self.date)
        except (TypeError, ValueError):
            p.append(f"date {self.date!r} is not ISO 8601")
        if self.dtype not in STORAGE_DTYPES:
            p.append(f"dtype {self.dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
        if not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            p.append("sha256 is not 64 lowercase hex digits")
        p += _slice_check_problems(self.slice_check)
        return p


def _is_fraction(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and 0.0 <= x <= 1.0


def _slice_check_problems(sc: dict[str, Any] | None) -> list[str]:
    if sc is None:
        return []
    ok = (isinstance(sc, dict) and set(sc) in ({"start", "n", "accuracy"}, {"start", "n", "step", "accuracy"})
          and all(isinstance(sc.get(k, 1), int) and not isinstance(sc.get(k, 1), bool)
                  for k in ("start", "n", "step"))
          and sc["start"] >= 0 and sc["n"] > 0 and sc.get("step", 1) > 0
          and sc["start"] + (sc["n"] - 1) * sc.get("step", 1) < 10_000
          and _is_fraction(sc["accuracy"]))
    return [] if ok else [f"slice_check {sc!r} is not {{start, n, step, accuracy}} within the 10,000 test images"]


def slice_indices(sc: dict[str, Any]) -> range:
    """The test-set indices a card's slice_check scores: n images from start, every step-th."""
    step = sc.get("step", 1)
    return range(sc["start"], sc["start"] + sc["n"] * step, step)


# ---------------------------------------------------------------------------- save

def save_weights(
    model: nn.Module,
    directory: str | os.PathLike,
    name: str,
    *,
    dataset: str,
    dataset_fingerprint: str,
    test_accuracy: float,
    test_accuracy_tta: float | None,
    per_class_accuracy: dict[str, float],
    train_config: dict[str, Any],
    epochs: int,
    train_seconds: float,
    hardware: dict[str, Any] | None = None,
    slice_check: dict[str, Any] | None = None,
    test_digest: str | None = None,
    dtype: str = "float32",
) -> tuple[Path, Path]:
    """Write <directory>/<name>.safetensors and <name>.json; returns (weights_path, card_path).

    hardware defaults to this machine's; pass the training machine's if export runs elsewhere.
    Both files are written to temp files first and renamed only when both are complete.
    """
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(STORAGE_DTYPES)}, not {dtype!r}")
    directory = Path(directory)
    card = ModelCard(
        model=name, params=sum(p.numel() for p in model.parameters()),
        dataset=dataset, dataset_fingerprint=dataset_fingerprint,
        test_accuracy=test_accuracy, test_accuracy_tta=test_accuracy_tta,
        per_class_accuracy=dict(per_class_accuracy), train_config=dict(train_config),
        epochs=epochs, train_seconds=train_seconds, hardware=hardware or hardware_info(),
        torch_version=torch.__version__, project_version=cifar_demo.__version__,
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dtype=dtype, sha256="0" * 64, slice_check=slice_check, test_digest=test_digest,
    )
    # Check the card before writing anything, so a bad call never leaves half an export.
    problems = card.validate()
    if problems:
        raise ValueError(f"model card for '{name}' is invalid: {'; '.join(problems)}")

    # state_dict, not parameters(): it keeps frozen parameters and the BatchNorm buffers.
    # num_batches_tracked is kept too: it is tiny, and keeping every key lets loading be strict.
    state = model.state_dict()
    param_keys = {k for k, _ in model.named_parameters(remove_duplicate=False)}
    metadata = {
        "format": "pt", "model": name, "producer": f"cifar_demo {cifar_demo.__version__}",
        # Lets verify() count parameters from the file alone, without building the model.
        "buffers": json.dumps([k for k in state if k not in param_keys]),
    }
    tensors = _storage_tensors(state, STORAGE_DTYPES[dtype])

    directory.mkdir(parents=True, exist_ok=True)
    weights_path, card_path = directory / f"{name}.safetensors", directory / f"{name}.json"
    with _temp_beside(weights_path) as wtmp, _temp_beside(card_path) as ctmp:
        save_file(tensors, str(wtmp), metadata=metadata)
        _fsync(wtmp)
        card = dataclasses.replace(card, sha256=_sha256_file(wtmp))
        ctmp.write_text(card.to_json())
        _fsync(ctmp)
        # Weights first: a reader that sees the new card also sees the new weights.
        _publish(wtmp, weights_path)
        _publish(ctmp, card_path)
    return weights_path, card_path


def _storage_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """CPU copies, floating ones cast to the storage dtype; integer buffers stay as they are.

    Fresh contiguous tensors because safetensors refuses strided views and shared storage
    (tied weights, channels_last parameters).
    """
    out = {}
    for key, t in state.items():
        t = t.detach()
        target = dtype if t.is_floating_point() else t.dtype
        copy = torch.empty(t.shape, dtype=target).copy_(t)
        if t.is_floating_point() and not torch.isfinite(copy).all() and torch.isfinite(t).all():
            raise ValueError(f"{key} overflows {dtype}; store this model as float32")
        out[key] = copy
    return out


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def _temp_beside(path: Path) -> Iterator[Path]:
    """A temp file in path's folder (same filesystem, so os.replace is atomic); removed if left."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _publish(tmp: Path, path: Path) -> None:
    """Rename a finished temp file onto path, with the mode a plain open() would have given it:
    mkstemp makes files owner-only (0600), and an app run as another user (a Space's container)
    must still read the weights."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def _fsync(path: Path) -> None:
    # Without it a crash right after the rename can leave an empty file under the final name.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# ---------------------------------------------------------------------------- load

def load_weights(
    name_or_path: str | os.PathLike,
    directory: str | os.PathLike | None = None,
    model: nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> tuple[nn.Module, ModelCard]:
    """Load shipped weights into `model` (built with zoo.create(card.model) if None).

    name_or_path: a zoo name (looked up in `directory`, default weights_dir(), then the Hub)
    or a path to either file of a pair. Returns (model on `device`, in eval mode; its card).
    """
    card_path, weights_path = _locate(name_or_path, directory)
    card = ModelCard.load(card_path)
    # Hash the very bytes we then parse: nothing is read as tensors before the check passes.
    data = weights_path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.sha256:
        raise WeightsError(
            f"{weights_path}: sha256 mismatch: its card {card_path} says {card.sha256}, the file "
            f"hashes to {digest}. The file is corrupt, truncated or not the one the card describes.")
    try:
        tensors = load_safetensors_bytes(data)
    except SafetensorError as e:
        raise WeightsError(f"{weights_path}: not a readable safetensors file: {e}") from e

    if model is None:
        model = _create_model(card.model)
    state = model.state_dict()
    problems = _architecture_problems(state, {k: t.shape for k, t in tensors.items()})
    if problems:
        raise WeightsError(f"{weights_path}: does not fit the architecture of '{card.model}' "
                           f"({type(model).__name__}): {'; '.join(problems)}")
    # fp16 storage: cast back to whatever dtype the model holds.
    model.load_state_dict({k: t.to(state[k].dtype) for k, t in tensors.items()})
    return model.to(pick_device(str(device))).eval(), card


def _create_model(name: str) -> nn.Module:
    # Imported here: the zoo imports every model family, and card-only callers need none.
    from cifar_demo import zoo

    return zoo.create(name)


def _architecture_problems(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Compare a model's state_dict with a file's {key: shape}; one message per kind of problem."""
    missing = [k for k in expected if k not in found]
    unexpected = sorted(k for k in found if k not in expected)  # file order is arbitrary
    shapes = [f"{k}: file {tuple(found[k])}, model {tuple(expected[k].shape)}"
              for k in expected if k in found and tuple(found[k]) != tuple(expected[k].shape)]
    problems = []
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected),
                        ("shape mismatch", shapes)):
        if items:
            more = f" (+{len(items) - _SHOW_KEYS} more)" if len(items) > _SHOW_KEYS else ""
            problems.append(f"{what} ({len(items)}): {', '.join(items[:_SHOW_KEYS])}{more}")
    return problems


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise WeightsError(f"{name!r} is not a valid model name")


def _locate(name_or_path: str | os.PathLike, directory: str | os.PathLike | None) -> tuple[Path, Path]:
    """(card_path, weights_path) for a path, or for a name: local folder, else the Hub."""
    p = Path(name_or_path)
    if p.suffix in (".safetensors", ".json") or len(p.parts) > 1:
        card, weights = p.with_suffix(".json"), p.with_suffix(".safetensors")
        missing = [str(f) for f in (weights, card) if not f.is_file()]
        if missing:
            raise WeightsError(f"missing {' and '.join(missing)} (a weights file needs its card beside it)")
        return card, weights
    name = str(name_or_path)
    _check_name(name)
    folder = Path(directory) if directory is not None else weights_dir()
    card, weights = folder / f"{name}.json", folder / f"{name}.safetensors"
    if card.is_file() and weights.is_file():
        return card, weights
    missing = [f.name for f in (weights, card) if not f.is_file()]
    return _from_hub(name, folder, missing)


def _hf_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _from_hub(name: str, folder: Path, missing: list[str]) -> tuple[Path, Path]:
    """Both files of `name` from the Hub repo: HF cache first, then online unless offline."""
    repo, offline = hub_repo(), _hf_offline()
    errors = []
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        errors.append(f"huggingface_hub is not installed ({e})")
    else:
        for local_only in (True,) if offline else (True, False):
            try:
                card = hf_hub_download(repo, f"{name}.json", local_files_only=local_only)
                weights = hf_hub_download(repo, f"{name}.safetensors", local_files_only=local_only)
                return Path(card), Path(weights)
            except Exception as e:  # cache miss, 404, auth, no network: each means "not from here"
                first_line = (str(e).strip().splitlines() or [""])[0][:200]
                errors.append(f"{'cache' if local_only else 'online'}: {type(e).__name__}: {first_line}")
    where = "local HF cache only, as HF_HUB_OFFLINE=1" if offline else "local HF cache, then online"
    network = "unset HF_HUB_OFFLINE and connect to the internet" if offline else "connect to the internet"
    raise WeightsError(
        f"no weights for model '{name}': {' and '.join(missing)} not found in {folder} "
        f"(set CIFAR_DEMO_WEIGHTS to look elsewhere), nor in the Hugging Face Hub repo '{repo}' "
        f"({where}: {'; '.join(errors)}).\n"
        f"To get them, train and export the model:\n"
        f"    python -m cifar_demo train --model {name}\n"
        f"    python -m cifar_demo export RUN_ID\n"
        f"or set CIFAR_DEMO_HUB_REPO to a Hub repo that has {name}.safetensors and {name}.json, "
        f"or {network}.")


# ---------------------------------------------------------------------------- listing, verify

def available(directory: str | os.PathLike | None = None) -> list[str]:
    """Names with both a card and a weights file in `directory` (default weights_dir()); local only."""
    folder = Path(directory) if directory is not None else weights_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if p.with_suffix(".safetensors").is_file())


def card_for(name: str, directory: str | os.PathLike | None = None) -> ModelCard:
    """The card of `name` from `directory` (reads the JSON only; no hashing, no Hub)."""
    _check_name(name)
    folder = Path(directory) if directory is not None else weights_dir()
    path = folder / f"{name}.json"
    if not path.is_file():
        raise WeightsError(f"no model card for '{name}': {path} not found")
    return ModelCard.load(path)


def verify(
    directory: str | os.PathLike | None = None,
    create: Callable[[str], nn.Module] | None = None,
) -> list[tuple[str, bool, str]]:
    """Check every card/weights pair in `directory`: [(name, ok, message)], sorted by name.

    Checks: both files present, card readable and valid, name matches, sha256, metadata,
    storage dtype, the card's params against the file's tensors, and the architecture
    (keys, shapes, params) of create(name) (default zoo.create).
    """
    folder = Path(directory) if directory is not None else weights_dir()
    if not folder.is_dir():
        raise WeightsError(f"weights folder {folder} does not exist")
    names = sorted({p.stem for p in folder.glob("*.json")} | {p.stem for p in folder.glob("*.safetensors")})
    return [(name, *_verify_pair(folder, name, create or _create_model)) for name in names]


def _verify_pair(folder: Path, name: str, create: Callable[[str], nn.Module]) -> tuple[bool, str]:
    card_path, weights_path = folder / f"{name}.json", folder / f"{name}.safetensors"
    missing = [f.name for f in (weights_path, card_path) if not f.is_file()]
    if missing:
        return False, f"missing {' and '.join(missing)}"
    try:
        card = ModelCard.load(card_path)
    except WeightsError as e:
        return False, str(e)
    digest = _sha256_file(weights_path)
    if digest != card.sha256:
        # Nothing else about a file that is not the one the card describes is worth reporting.
        return False, f"sha256 mismatch: card says {card.sha256}, {weights_path.name} hashes to {digest}"
    problems = card.validate()
    if card.model != name:
        problems.append(f"card is for model '{card.model}' but the files are named '{name}'")
    try:
        with safe_open(str(weights_path), "pt") as f:
            meta = f.metadata() or {}
            slices = {k: f.get_slice(k) for k in f.keys()}
            shapes = {k: tuple(s.get_shape()) for k, s in slices.items()}
            dtypes = {k: s.get_dtype() for k, s in slices.items()}
    except (SafetensorError, OSError) as e:
        return False, f"{weights_path.name}: not a readable safetensors file: {e}"
    problems += _file_problems(card, meta, shapes, dtypes)
    try:
        model = create(card.model)
    except Exception as e:  # unknown name, zoo missing, broken constructor: all make the pair unusable
        problems.append(f"cannot build '{card.model}' to check the architecture: {type(e).__name__}: {e}")
    else:
        problems += _architecture_problems(model.state_dict(), shapes)
        built = sum(p.numel() for p in model.parameters())
        if built != card.params:
            problems.append(f"params: card says {card.params:,}, the model has {built:,}")
    if problems:
        return False, "; ".join(problems)
    return True, f"ok: {card.params:,} params, {card.dtype}, sha256 {card.sha256[:12]}"


def _file_problems(card: ModelCard, meta: dict[str, str], shapes: dict[str, tuple],
                   dtypes: dict[str, str]) -> list[str]:
    """What the safetensors header says against what the card says."""
    problems = []
    if meta.get("model") != card.model:
        problems.append(f"file metadata names model {meta.get('model')!r}, card says '{card.model}'")
    try:
        buffers = set(json.loads(meta["buffers"]))
    except (KeyError, ValueError, TypeError):
        problems.append("file metadata lacks the buffer list; cannot count parameters")
    else:
        counted = sum(math.prod(s) for k, s in shapes.items() if k not in buffers)
        if counted != card.params:
            problems.append(f"params: card says {card.params:,}, the file holds {counted:,}")
    want = _SAFETENSORS_DTYPE.get(card.dtype)
    wrong = [k for k, d in dtypes.items() if d.startswith(("F", "BF")) and d != want]
    if want and wrong:
        problems.append(f"card says {card.dtype} but {len(wrong)} tensors are not {want}: "
                        f"{', '.join(wrong[:_SHOW_KEYS])}")
    return problems


# ---------------------------------------------------------------------------- training checkpoints

def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """torch.save atomically (temp file, then rename): a killed run never leaves half a file.

    Keep `state` to tensors and plain containers/numbers/strings so load_checkpoint can read it
    with weights_only=True (e.g. numpy RNG states are refused; store torch RNG states instead).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temp_beside(path) as tmp:
        torch.save(state, tmp)
        _fsync(tmp)
        _publish(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> Any:
    """torch.load(path, weights_only=True, map_location="cpu"), with clear errors.

    weights_only: the unpickler only rebuilds tensors and plain containers, so a checkpoint
    that names any other global (an arbitrary object or a function) is refused unexecuted.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise WeightsError(f"{path}: refused to unpickle {found.group(1)}: a checkpoint may hold "
                               f"only tensors and plain containers (weights_only=True)") from e
        raise WeightsError(f"{path}: corrupt or truncated checkpoint (not a torch.save file): "
                           f"{_first_line(e)}") from e
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise WeightsError(f"{path}: corrupt or truncated checkpoint: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
