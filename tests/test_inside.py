"""Inside the network, the library: the architecture table, the stages of one picture, the filters,
each channel's favourites (cached), the embedding map (deterministic, cached) and the per-epoch
snapshots the engine keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cifar_demo import runs, zoo
from cifar_demo.analysis import embedding, inside, inside_runs, inside_topk
from cifar_demo.reporting import inside_draw, inside_map
from cifar_demo.zoo import analysis as zoo_analysis

from .helpers import TinyWhitenedNet, cfg, run, synthetic_arrays, to_split


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = TinyWhitenedNet()
    m.train()
    with torch.no_grad():
        m(torch.rand(16, 3, 32, 32))
    return m.eval()


@pytest.fixture(scope="module")
def split():
    x, y = synthetic_arrays(10, seed=5)     # 100 pictures, 10 a class
    return to_split(x, y)


# The last map's receptive field as zoo.analysis.receptive_field measures it by gradient (quiz_dnn's
# takes half a minute on a shared core, so its figure is written here; airnet's is measured live).
FIELDS = {"quiz_dnn": 46, "airnet": None}


@pytest.mark.parametrize("name", ["quiz_dnn", pytest.param("airnet", marks=pytest.mark.slow)])
def test_the_table_adds_up_to_the_zoos_own_counts(name):
    model = zoo.create(name).eval()
    rows = inside.architecture(model)
    assert sum(r.macs for r in rows) == zoo_analysis.count_macs(model)
    assert sum(r.params for r in rows) == zoo_analysis.count_params(model)
    last_map = [r for r in rows if len(r.output_shape) == 3 and r.output_shape[-1] > 1][-1]
    assert last_map.receptive_field == (FIELDS[name] or zoo_analysis.receptive_field(model))
    assert rows[-1].output_shape == (10,) and rows[-1].receptive_field is None
    assert len(rows[0].cells()) == len(inside.TABLE_HEADERS)


def test_a_picture_goes_through_every_stage_to_the_softmax(tiny):
    image = synthetic_arrays(1, seed=3)[0][0]
    look = inside.look_inside(tiny, image, [f"c{i}" for i in range(10)])
    kinds = [s.kind for s in look.stages]
    assert kinds == ["conv", "conv", "logits"]     # whiten, conv (+ its BatchNorm), the head
    assert look.stages[1].name == "conv (Conv2d) + BatchNorm2d"
    assert look.map_stages[0].maps.shape == (6, 31, 31) and look.map_stages[1].maps.shape == (8, 29, 29)
    assert np.isclose(look.probs.sum(), 1) and look.logits.shape == (10,)
    for v in look.map_stages:   # most active first: mean |activation| never increases along the order
        strength = np.abs(v.maps).reshape(len(v.maps), -1).mean(1)[v.order]
        assert np.all(np.diff(strength) <= 1e-6) and sorted(v.order) == list(range(len(v.maps)))
    with pytest.raises(ValueError, match="32x32"):
        inside.look_inside(tiny, image[:16], range(10))


def test_grids_state_one_colour_scale_and_label_every_channel(tiny):
    look = inside.look_inside(tiny, synthetic_arrays(1, seed=3)[0][0], range(10))
    picture, caption = inside_draw.stage_grid(look.map_stages[1], k=4)
    assert picture.ndim == 3 and picture.dtype == np.uint8 and picture.shape[2] == 3
    lo, hi = inside.colour_range(look.map_stages[1].top(4)[1])
    assert f"{hi:.3g}" in caption and "4 most active" in caption
    assert inside.colour_range(np.array([[-1.0, 3.0]])) == (-3.0, 3.0)   # signed maps: 0 in the middle


def test_the_first_filters_are_rgb_patches_around_grey(tiny):
    name, f = inside.first_filters(tiny)
    assert name == "whiten" and f.shape == (6, 2, 2, 3)
    assert f.min() >= 0 and f.max() <= 1
    assert np.allclose(np.abs(f - 0.5).reshape(6, -1).max(1), 0.5)   # each filter scaled on its own
    assert inside_draw.filters_grid(f).shape[2] == 3


def test_favourites_are_each_channels_strongest_pictures_and_are_cached(tiny, split, tmp_path):
    tops, hit = inside_topk.favourites(tiny, "tiny", "ab" * 32, split, cache=tmp_path)
    assert not hit and len(tops) == 2
    stages, _ = inside.forward_stages(tiny, split.images)
    peak = stages[1].output.flatten(2).max(2).values     # N,C
    t = tops[1]
    assert t.index.shape == (8, 9) and t.size == (29, 29)
    assert np.allclose(t.value[:, 0], peak.max(0).values.numpy(), atol=1e-5)
    assert np.all(np.diff(t.value, axis=1) <= 0)
    again, hit = inside_topk.favourites(tiny, "tiny", "ab" * 32, split, cache=tmp_path)
    assert hit and all(np.array_equal(a.index, b.index) and a.name == b.name for a, b in zip(tops, again))
    assert inside_topk.cached_favourites("tiny", "cd" * 32, split, cache=tmp_path) is None   # other weights
    assert inside.stage_fields(tiny) == [2, 4]
    p = inside_topk.patch(np.zeros((32, 32, 3), np.uint8), 28, 28, (29, 29), 4)
    assert p.shape == (4, 4, 3)


@pytest.mark.slow   # two t-SNE runs: seconds on an idle core, minutes on shared ones
def test_the_map_is_the_same_for_the_same_seed_and_is_cached(tiny, split, tmp_path):
    feats, probs = embedding.features(tiny, split.images)
    assert feats.shape == (100, 8) and probs.shape == (100, 10)
    m, hit = embedding.embedding(tiny, "tiny", "ef" * 32, split, cache=tmp_path)
    a = embedding.project(feats, seed=0)
    assert not hit
    for method in embedding.METHODS:
        assert a[method].shape == (100, 2) and np.array_equal(a[method], m.xy[method])
        assert np.abs(a[method]).max() == pytest.approx(1)
    again, hit = embedding.embedding(tiny, "tiny", "ef" * 32, split, cache=tmp_path)
    assert hit and np.array_equal(again.xy["pca"], m.xy["pca"]) and np.array_equal(again.preds, m.preds)
    near = m.neighbours(0, 5)
    assert len(near) == 5 and 0 not in near
    for bad in (-1, 100, "3", 1.5, True, None):
        with pytest.raises(ValueError):
            m.check_index(bad)
    for bad in (0, 999, 5000, "1000", 100.5):
        with pytest.raises(ValueError):
            embedding.check_size(bad)
    html = inside_map.map_html(m, "tsne", [f"c{i}" for i in range(10)], split.images.permute(0, 2, 3, 1).numpy(),
                               "tiny", highlight=(1, None))
    assert html.count("<circle") == 100 and "data:image/jpeg;base64," in html


def test_snapshots_fit_their_budget():
    mb = 2**20
    assert all(runs.snapshot_due(e, 10, 4 * mb, budget=48 * mb) for e in range(1, 11))
    kept = [e for e in range(1, 31) if runs.snapshot_due(e, 30, 22 * mb // 10 * 10, budget=48 * mb)]
    assert kept[0] == 1 and kept[-1] == 30 and len(kept) * 22 * mb // 10 * 10 <= 48 * mb * 1.01


@pytest.mark.slow   # two epochs of the engine
def test_the_engine_keeps_a_snapshot_per_epoch(tmp_path, tiny_data):
    summary, run_dir = run(cfg(epochs=2), tmp_path, tiny_data)
    r = runs.Run(run_dir)
    assert inside_runs.saved_epochs(r) == [1, 2]
    one, two = inside_runs.snapshot_model(r, 1), inside_runs.snapshot_model(r, 2)
    w1, w2 = inside.first_filters(one)[1], inside.first_filters(two)[1]
    assert w1.shape == w2.shape and not np.allclose(w1, w2)     # the filters moved between epochs
    assert inside_runs.nearest_epoch(r, 1.4) == 1 and inside_runs.nearest_epoch(r, 9) == 2
    with pytest.raises(ValueError):
        inside_runs.nearest_epoch(r, "2")
    with pytest.raises(ValueError):
        inside_runs.snapshot_model(r, 3)
