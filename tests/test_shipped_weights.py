"""Every shipped model card is reproducible: its weights verify and re-score its test slice.

A broken, swapped or tampered weights file fails here. The slice is scored on the test images
the card was scored on (same decoded pixels: `test_digest`); where they are absent here the
slice test is skipped with a reason. File times do not matter: a fresh copy of the export counts.
"""

from __future__ import annotations

import pytest

from cifar_demo import data, weights
from cifar_demo.analysis import evaluate

SHIPPED = weights.available(weights.weights_dir())


def test_weights_folder_verifies_and_stays_small():
    directory = weights.weights_dir()
    problems = [(name, msg) for name, ok, msg in weights.verify(directory) if not ok]
    assert not problems
    total = sum(p.stat().st_size for p in directory.glob("*")) if directory.exists() else 0
    assert total < 150 * 1024 * 1024


@pytest.mark.slow   # re-scores each shipped model on real data
@pytest.mark.parametrize("name", SHIPPED)
def test_card_slice_accuracy_reproduces(name, jpeg_export):
    card = weights.card_for(name)
    assert card.slice_check is not None, f"{name}'s card has no slice_check"
    assert card.test_digest, f"{name}'s card has no test_digest: re-export it"
    test = data.load_split("test", data.resolve_source(jpeg_export, download=False))
    if data.split_digest(test) != card.test_digest:
        pytest.skip(f"{name} was scored on other test images ({card.dataset}, digest "
                    f"{card.test_digest[:12]}) than those at {jpeg_export}")
    model, card = weights.load_weights(name)
    res = evaluate.evaluate(model, data.subset(test, weights.slice_indices(card.slice_check)), device="cpu")
    # fp32 on CPU: identical up to the odd image whose top two logits nearly tie
    assert res.accuracy == pytest.approx(card.slice_check["accuracy"], abs=0.002)
