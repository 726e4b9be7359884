"""Where the pictures land: a model's penultimate features of a test slice, mapped to 2-D.

The features are the input of the model's last linear layer (what the classifier reads), for a
class-balanced slice of the test split (1,000 pictures by default, 2,000 at most; a run on your
own images uses its own test split). Two maps of them:

- PCA (scikit-learn): the two directions of largest variance; linear, so distances along them mean
  something, but classes that a curved boundary separates may overlap.
- t-SNE (scikit-learn's Barnes-Hut TSNE on the first 50 principal components, perplexity 30, PCA
  initialisation, seed 0): keeps each
  picture's nearest neighbours near, so clusters show; distances between clusters mean little.
  Chosen over UMAP (umap-learn) because scikit-learn is one well-kept dependency that gives PCA,
  t-SNE and nearest neighbours together, with no numba compilation on the first call (seconds on a
  2-core CPU), and with a fixed random_state its result is the same on every run of this machine.

Both are pure functions of the weights file (sha256), the slice (data.split_digest) and the code
(VERSION), so a map is cached under that key (arraycache) with the labels, predictions and
confidences it shows: the first map of a model costs a forward pass of the slice and a t-SNE, every
later one a file read.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import data as data_mod
from ..common import to_unit
from . import arraycache, inside

VERSION = 2
DEFAULT_N = 1000
MAX_N = 2000
SIZES = (100, 1000, 2000)     # the quick slice, the default, the most allowed
SEED = 0
PERPLEXITY = 30.0
BATCH = 200
METHODS = ("tsne", "pca")


def check_size(n) -> int:
    """A slice size a page may ask for (one of SIZES), else ValueError."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or int(n) != n or int(n) not in SIZES:
        raise ValueError(f"the map is drawn for {', '.join(f'{s:,}' for s in SIZES)} test pictures")
    return int(n)


def last_linear(model: nn.Module) -> nn.Module:
    """The last linear layer a forward pass calls: the classifier whose input is the feature vector."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no linear classifier")
    with torch.inference_mode(), inside.recording(linears) as calls:
        p = next(model.parameters())
        model(torch.zeros(1, 3, 32, 32, dtype=p.dtype, device=p.device))
    return calls[-1][1]


@torch.inference_mode()
def features(model: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(N,F float32 penultimate features, N,C float32 class probabilities) of N pictures."""
    head = last_linear(model)
    feats, probs = [], []
    for start in range(0, len(images), BATCH):
        with inside.recording([("head", head)], pre=True) as calls:
            logits = model(to_unit(images[start:start + BATCH])).float()
        feats.append(calls[-1][2].float().flatten(1).cpu().numpy())
        probs.append(torch.softmax(logits, 1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(probs)


_SKLEARN = threading.Lock()   # one projection at a time: it uses both cores


def project(feats: np.ndarray, seed: int = SEED) -> dict[str, np.ndarray]:
    """{"pca": N,2, "tsne": N,2} float32, each scaled into [-1, 1] (the same input and seed give the same maps)."""
    from sklearn.decomposition import PCA  # lazy: scikit-learn takes a second to import
    from sklearn.manifold import TSNE

    x = feats.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)     # each feature on the same scale
    with _SKLEARN:
        pca = PCA(n_components=2, svd_solver="full", random_state=seed).fit_transform(x)
        perplexity = min(PERPLEXITY, (len(x) - 1) / 3)
        # t-SNE on the first 50 principal components (the usual first step: the neighbours it
        # looks for are found on 50 numbers, not hundreds, and little but noise is lost).
        x50 = PCA(n_components=min(50, *x.shape), svd_solver="full", random_state=seed).fit_transform(x)
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                    max_iter=1000, method="barnes_hut").fit_transform(x50)
    return {"pca": _unit_box(pca), "tsne": _unit_box(tsne)}


def _unit_box(xy: np.ndarray) -> np.ndarray:
    xy = xy - (xy.max(0) + xy.min(0)) / 2
    return (xy / max(float(np.abs(xy).max()), 1e-9)).astype(np.float32)


@dataclass
class Map:
    """A slice of test pictures through one model: their features, where each lands, and the answers."""

    feats: np.ndarray       # N,F float32
    xy: dict[str, np.ndarray]   # method -> N,2 float32 in [-1, 1]
    labels: np.ndarray      # N int
    preds: np.ndarray       # N int
    confidence: np.ndarray  # N float32: the probability of the predicted class

    @property
    def wrong(self) -> np.ndarray:
        return self.preds != self.labels

    @property
    def accuracy(self) -> float:
        return float((~self.wrong).mean()) if len(self.labels) else 0.0

    def neighbours(self, i: int, k: int = 8) -> np.ndarray:
        """The k pictures nearest picture i in feature space (cosine), nearest first, i itself left out."""
        i = self.check_index(i)
        f = self.feats / (np.linalg.norm(self.feats, axis=1, keepdims=True) + 1e-9)
        sim = f @ f[i]
        sim[i] = -np.inf
        return np.argsort(-sim, kind="stable")[:k]

    def check_index(self, i) -> int:
        """A point of this map by its number, else ValueError (a page may send anything)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < len(self.labels):
            raise ValueError("there is no such point on the map")
        return int(i)


def compute_map(model: nn.Module, split: data_mod.Split, seed: int = SEED) -> Map:
    feats, probs = features(model, split.images)
    preds = probs.argmax(1)
    return Map(feats, project(feats, seed), split.labels.cpu().numpy().astype(np.int64), preds.astype(np.int64),
               probs[np.arange(len(preds)), preds].astype(np.float32))


def _key(architecture: str, sha256: str, split: data_mod.Split) -> str:
    return arraycache.key("map", architecture, sha256, data_mod.split_digest(split), VERSION)


def _unpack(a: dict[str, np.ndarray]) -> Map:
    return Map(a["feats"], {m: a[m] for m in METHODS}, a["labels"], a["preds"], a["confidence"])


def embedding(model: nn.Module, architecture: str, sha256: str, split: data_mod.Split, *,
              cache: str | os.PathLike | None = None) -> tuple[Map, bool]:
    """(the map of `split` through the model, whether it came from the cache)."""
    key = _key(architecture, sha256, split)
    hit = arraycache.load(key, cache)
    if hit is not None:
        return _unpack(hit), True
    m = compute_map(model, split)
    arraycache.store(key, {"feats": m.feats.astype(np.float32), **m.xy, "labels": m.labels, "preds": m.preds,
                           "confidence": m.confidence}, cache)
    return m, False


def cached_embedding(architecture: str, sha256: str, split: data_mod.Split, *,
                     cache: str | os.PathLike | None = None) -> Map | None:
    hit = arraycache.load(_key(architecture, sha256, split), cache)
    return None if hit is None else _unpack(hit)
