"""Time the embedding map's first computation (no cache) for every shipped model.

    python bench/inside_map.py [--n 1000]

For each model: the forward pass of the class-balanced test slice (penultimate features) and the
projections (PCA and scikit-learn's t-SNE), into a fresh temporary cache, so nothing is reused.
Prints one line per model and the total; as a reference in the same invocation, the same
projections of random features of airnet's width (256), so a reader can tell the machine's speed.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np
import torch

from cifar_demo import data, weights
from cifar_demo.analysis import embedding


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=embedding.DEFAULT_N)
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    split = data.stratified_subset(data.load_split("test", data.resolve_source(download=False)), args.n,
                                   embedding.SEED)
    t0 = time.perf_counter()
    embedding.project(np.random.default_rng(0).standard_normal((len(split), 256)).astype(np.float32))
    ref = time.perf_counter() - t0
    print(f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
          f"{len(split)} test pictures; reference (projections of random 256-d features): {ref:.1f} s")
    total = 0.0
    with tempfile.TemporaryDirectory() as cache:
        for name in weights.available():
            loaded = weights.load(name)
            t0 = time.perf_counter()
            feats, _ = embedding.features(loaded.model, split.images)
            t1 = time.perf_counter()
            m, hit = embedding.embedding(loaded.model, loaded.architecture, loaded.sha256, split, cache=cache)
            t2 = time.perf_counter()
            assert not hit
            total += t2 - t1
            print(f"{name:14s} features {feats.shape[1]:6d}  forward pass {t1 - t0:6.1f} s  "
                  f"first map (forward + PCA + t-SNE) {t2 - t1:6.1f} s = {(t2 - t1) / ref:4.1f}x reference  "
                  f"accuracy on the slice {m.accuracy:.1%}", flush=True)
    print(f"all {len(weights.available())} models: {total:.0f} s ({total / ref:.1f}x reference)")


if __name__ == "__main__":
    main()
