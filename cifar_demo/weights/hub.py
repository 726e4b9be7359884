"""The Hugging Face Hub: a fallback for weights missing locally, and pushing a pair of files.

Download: the HF cache first (no network), then online unless HF_HUB_OFFLINE=1, from the repo
named by CIFAR_DEMO_HUB_REPO. There is no default repo: the project publishes none of its
own, and fetching a stranger's files by default would be the wrong kind of surprise. The
files are verified by the same sha256 check as local ones (store.load_weights).

Push: a card + weights pair (and a short README.md for the repo's page) in one commit. The
token (an argument, HF_TOKEN, or the user's `hf auth login`) is passed to huggingface_hub
explicitly so that every message we raise can be scrubbed of it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cifar_demo.common import CLASSES

from .card import ModelCard, WeightsError

# No default: weights come from a Hub repo only when one is configured (CIFAR_DEMO_HUB_REPO).
DEFAULT_HUB_REPO: str | None = None
HUB_REPO_ENV = "CIFAR_DEMO_HUB_REPO"
# huggingface_hub's own rule for repo ids (letters, digits, '-', '_', '.'; one '/'), kept here so
# a bad --repo is refused before any token is looked up.
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")
# User access tokens look like hf_ + letters and digits; scrubbed even where we did not pass them.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
README_MARK = "<!-- written by python -m cifar_demo push -->"


def hub_repo() -> str | None:
    """The Hub repo id that weights missing from weights_dir() are fetched from, or None."""
    return os.environ.get(HUB_REPO_ENV, "").strip() or DEFAULT_HUB_REPO


def hf_offline() -> bool:
    # Read at call time (huggingface_hub reads it once, at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _how_to_train(name: str) -> str:
    return (f"To get them, train and export the model:\n"
            f"    python -m cifar_demo train --model {name}\n"
            f"    python -m cifar_demo export RUN_ID\n")


def from_hub(name: str, folder: Path, missing: list[str]) -> tuple[Path, Path]:
    """(card_path, weights_path) of `name` from the Hub repo: HF cache first, then online unless
    offline. `folder` and `missing` say what was not found locally, for the error message."""
    local = (f"no weights for model '{name}': {' and '.join(missing)} not found in {folder} "
             f"(set CIFAR_DEMO_WEIGHTS to look elsewhere)")
    repo, offline = hub_repo(), hf_offline()
    if repo is None:
        raise WeightsError(
            f"{local}, and no Hugging Face Hub repo is configured to fetch them from.\n"
            f"{_how_to_train(name)}"
            f"or set {HUB_REPO_ENV}=USER/NAME to a Hub repo that has {name}.safetensors and {name}.json "
            f"(one that `python -m cifar_demo push RUN_ID --repo USER/NAME` filled).")
    errors = []
    try:
        from huggingface_hub import hf_hub_download  # lazy: only a Hub download needs it (a clear error if missing)
    except ImportError as e:
        errors.append(f"huggingface_hub is not installed ({e})")
    else:
        for local_only in (True,) if offline else (True, False):
            try:
                card = hf_hub_download(repo, f"{name}.json", local_files_only=local_only)
                weights = hf_hub_download(repo, f"{name}.safetensors", local_files_only=local_only)
                return Path(card), Path(weights)
            except Exception as e:  # cache miss, 404, auth, no network: each means "not from here"
                first_line = (scrub(str(e)).strip().splitlines() or [""])[0][:200]
                errors.append(f"{'cache' if local_only else 'online'}: {type(e).__name__}: {first_line}")
    where = "local HF cache only, as HF_HUB_OFFLINE=1" if offline else "local HF cache, then online"
    network = "unset HF_HUB_OFFLINE and connect to the internet" if offline else "connect to the internet"
    raise WeightsError(
        f"{local}, nor in the Hugging Face Hub repo '{repo}' ({where}: {'; '.join(errors)}).\n"
        f"{_how_to_train(name)}"
        f"or set {HUB_REPO_ENV} to a Hub repo that has {name}.safetensors and {name}.json, "
        f"or {network}.")


# ---------------------------------------------------------------------------- push

def scrub(text: str, *secrets: str | None) -> str:
    """`text` with each secret (and anything shaped like an HF token) replaced by '***'."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _TOKEN_RE.sub("***", text)


def check_repo_id(repo: str) -> None:
    if not isinstance(repo, str) or not _REPO_RE.match(repo) or ".." in repo or repo.endswith((".git", ".")):
        raise WeightsError(f"{repo!r} is not a Hugging Face repo id: give USER/NAME (e.g. alice/cifar-weights)")


def resolve_token(token: str | None = None) -> str:
    """The token to push with: the argument, else HF_TOKEN, else the saved `hf auth login` one."""
    token = token or os.environ.get("HF_TOKEN", "").strip() or None
    if token is None:
        try:
            from huggingface_hub import get_token  # lazy: only a push needs it
        except ImportError as e:
            raise WeightsError(f"pushing needs huggingface_hub ({e})") from None
        token = get_token()
    if not token:
        raise WeightsError("no Hugging Face token: set HF_TOKEN (a token with write access, from "
                           "https://huggingface.co/settings/tokens) or run `hf auth login`")
    return token


def readme_text(card: ModelCard, repo: str) -> str:
    """A short page for the Hub repo: what the files are, how well they scored, how to use them."""
    tta = ("" if card.test_accuracy_tta is None
           else f" ({100 * card.test_accuracy_tta:.2f}% with test-time augmentation)")
    # A CIFAR-10 model keeps the page it has always had; a model of other classes names them.
    cifar = card.class_names == CLASSES
    on = "CIFAR-10" if cifar else f"{len(card.class_names)} classes ({', '.join(card.class_names)})"
    tag = "- cifar10\n" if cifar else ""
    return f"""---
tags:
- image-classification
{tag}- cifar-demo
library_name: pytorch
---
{README_MARK}
# {card.model} on {on} ({repo})

`{card.model}.safetensors` holds the weights of the cifar-demo zoo model `{card.zoo_name}`
({card.params:,} parameters, stored as {card.dtype}); `{card.model}.json` is its model card:
the training configuration, the data, the machine, and the sha256 that cifar-demo checks
before it reads the weights.

Test accuracy: {100 * card.test_accuracy:.2f}%{tta} on {card.dataset}, after {card.epochs} epochs
({_duration(card.train_seconds)} of training).

Use them with cifar-demo:

    CIFAR_DEMO_HUB_REPO={repo} python -m cifar_demo evaluate --model {card.model}
    python -m cifar_demo predict --weights {card.model}.safetensors photo.jpg
"""


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


@dataclass(frozen=True)
class PushResult:
    repo: str
    url: str
    files: list[str]     # the paths in the repo that this push wrote
    card: ModelCard


def push_files(weights_path: str | os.PathLike, card_path: str | os.PathLike, repo: str, *,
               token: str | None = None, private: bool = False, readme: bool = True,
               commit_message: str | None = None, folder: str = "") -> PushResult:
    """Upload a weights file and its card (named <model>.safetensors / <model>.json in the repo,
    as from_hub looks for them) in one commit, creating the repo if needed.

    readme: also write README.md, unless the repo has one that `push` did not write.
    folder: a sub-folder of the repo to write into (e.g. a shared app's visitors/<run id>), so that
    the files at the repo's root, which from_hub serves, are never replaced; no README then.
    Any failure is a WeightsError whose message never contains the token.
    """
    check_repo_id(repo)
    folder = folder.strip("/")
    if folder and (not re.fullmatch(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", folder) or ".." in folder.split("/")):
        raise WeightsError(f"not a folder name for the Hub repo: {folder!r}")
    readme = readme and not folder
    card = ModelCard.load(card_path)
    token = resolve_token(token)
    try:
        from huggingface_hub import HfApi  # lazy: only a push needs it
    except ImportError as e:
        raise WeightsError(f"pushing needs huggingface_hub ({e})") from None
    step = "connecting"
    try:
        api = HfApi(token=token)
        step = f"creating {repo}"
        url = str(api.create_repo(repo, private=private, exist_ok=True, repo_type="model"))
        with tempfile.TemporaryDirectory(prefix="cifar-demo-push-") as tmp:
            # One folder, one commit: the card (which holds the weights' sha256) never lands
            # without its weights.
            staging = Path(tmp)
            files = [f"{card.model}.safetensors", f"{card.model}.json"]
            shutil.copyfile(weights_path, staging / files[0])
            shutil.copyfile(card_path, staging / files[1])
            if readme:
                step = f"looking for README.md in {repo}"
                if _may_write_readme(api, repo):
                    (staging / "README.md").write_text(readme_text(card, repo), encoding="utf-8")
                    files.append("README.md")
            step = f"uploading to {repo}"
            api.upload_folder(repo_id=repo, folder_path=str(staging), repo_type="model",
                              commit_message=commit_message or f"cifar-demo push: {card.model}",
                              allow_patterns=files, path_in_repo=folder or None)
    except Exception as e:  # HTTP, auth, network: one message, scrubbed, without the chained traceback
        raise WeightsError(f"push to the Hugging Face Hub failed while {step}: {type(e).__name__}: "
                           f"{scrub(str(e), token)}") from None
    return PushResult(repo=repo, url=url, files=[f"{folder}/{f}" if folder else f for f in files], card=card)


def _may_write_readme(api, repo: str) -> bool:
    """True if the repo has no README.md, or one that push wrote (a user's own page is kept)."""
    if not api.file_exists(repo, "README.md", repo_type="model"):
        return True
    text = Path(api.hf_hub_download(repo, "README.md", repo_type="model")).read_text(
        encoding="utf-8", errors="replace")
    return README_MARK in text
