"""Synthetic CIFAR-10 sources for the data tests: tiny folders in tmp_path.

Every synthetic image has a unique colour pattern, so a test can tell which file an array
came from.

Fake official files: torchvision's md5 check rejects them, as it must. So the tests check
that rejection (a clear error naming the files), and run the rest of the official path
with torchvision's md5 table swapped for the fake files' md5s: the real check and the real
torchvision loader still run, on files we can write.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torchvision
from PIL import Image

from cifar_demo import data as D
from cifar_demo.common import CLASSES


def pixels(label: int, i: int, split: str) -> np.ndarray:
    """A unique 32x32x3 uint8 image for (split, label, i)."""
    rng = np.random.default_rng([label, i, split == "test"])
    return rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)


def make_imagefolder(root: Path, per_class: int = 3, ext: str = "png") -> Path:
    for split in D.SPLITS:
        for label, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(pixels(label, i, split)).save(root / split / cls / f"{i:04d}.{ext}")
    return root


def make_official(root: Path, per_class: int = 2) -> Path:
    """root/cifar-10-batches-py in CIFAR's own pickle format: 5 train batches, 1 test batch."""
    folder = root / D.OFFICIAL_DIR
    folder.mkdir(parents=True)

    def batch(name: str, split: str, start: int) -> None:
        labels = [c for c in range(10) for _ in range(per_class)]
        rows = [pixels(c, start + k % per_class, split).transpose(2, 0, 1).reshape(-1)
                for k, c in enumerate(labels)]
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": labels, "data": np.stack(rows),
                         "filenames": [f"{name}_{k}.png" for k in range(len(labels))]}, f, protocol=2)

    for b in range(5):
        batch(f"data_batch_{b + 1}", "train", b * per_class)
    batch("test_batch", "test", 0)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(CLASSES), "num_cases_per_batch": 10 * per_class, "num_vis": 3072},
                    f, protocol=2)
    return root


def trust_fake_md5s(monkeypatch, root: Path) -> None:
    """Point torchvision's CIFAR-10 md5 table at the fake files of `root`."""
    cls = torchvision.datasets.CIFAR10

    def md5(name: str) -> str:
        return hashlib.md5((root / D.OFFICIAL_DIR / name).read_bytes()).hexdigest()

    monkeypatch.setattr(cls, "train_list", [[n, md5(n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(cls.meta["filename"])})


def forbid_download(monkeypatch) -> None:
    class NoDownload(torchvision.datasets.CIFAR10):
        def download(self):
            raise AssertionError("download must not be tried when a local source exists")
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", NoDownload)


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in sorted(root.rglob("*"))}


def save_random_weights(folder, names, seed: int = 0):
    """Randomly initialised weights + cards for zoo models in `folder` (tests only: never shipped).
    The card says 50% everywhere; the bytes differ per seed, so a new seed is a new weights file."""
    import torch

    from cifar_demo import weights, zoo
    from cifar_demo.common import CLASSES

    torch.manual_seed(seed)
    for name in names:
        weights.save_weights(zoo.create(name).eval(), folder, name, dataset="CIFAR-10 (JPEG export)",
                             dataset_fingerprint="test", test_accuracy=0.5, test_accuracy_tta=None,
                             per_class_accuracy={c: 0.5 for c in CLASSES}, train_config={},
                             epochs=0, train_seconds=0.0)
    return folder
