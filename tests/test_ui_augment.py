"""Augmentations tab: its handlers, called directly (no browser)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from cifar_demo import augment, data
from cifar_demo.common import CLASSES
from cifar_demo.ui import augment_tab as tab

torch.set_num_threads(1)
BIG = 32 * tab.SCALE


@pytest.fixture(scope="module")
def horse() -> np.ndarray:
    return tab.sample_image("horse 1")


def preview(image, name, seed=0, **overrides):
    """transform_preview with the default sliders, some of them moved."""
    values = {**augment.TRANSFORMS[name].defaults(), **overrides}
    return tab.transform_preview(image, name, seed, *values.values())


# ----------------------------------------------------------------------------- the sample


def test_sample_names_and_gallery_layout():
    names = tab.sample_names()
    assert len(names) == len(set(names)) == 50
    assert names[:2] == ["airplane 1", "airplane 2"]
    order = tab.gallery_order()
    assert sorted(order) == sorted(names)
    # one column per class: each row of ten holds every class once, in CLASSES order
    for row in range(5):
        assert [n.rsplit(" ", 1)[0] for n in order[row * 10:(row + 1) * 10]] == list(CLASSES)
    thumbs = tab.sample_thumbnails()
    assert thumbs[3][1] == "cat 1" and thumbs[3][0].shape == (32 * tab.THUMB_SCALE,) * 2 + (3,)
    loaded = tab._load_gallery()  # the page opens with the default image marked
    assert order[loaded.selected_index] == tab.DEFAULT_IMAGE


def test_choose_sample_is_the_bundled_image():
    image, view, caption = tab.choose_sample("cat 2")
    split = data.load_sample()
    expected = split.images[CLASSES.index("cat") * 5 + 1].permute(1, 2, 0).numpy()
    assert np.array_equal(image, expected)
    assert np.array_equal(view, augment.upscale_nearest(expected, tab.MIX_SCALE))
    assert "cat" in caption
    with pytest.raises(gr.Error, match="not one of the sample"):
        tab.sample_image("unicorn 1")


def test_gallery_click_picks_the_image_under_the_cursor():
    evt = gr.SelectData(None, {"index": 13, "value": None})  # row 2, column 4: cat
    image, _, caption = tab._on_gallery_select(evt)
    assert np.array_equal(image, tab.sample_image("cat 2")) and "cat 2" in caption


def test_upload_is_cropped_to_32x32(tmp_path, uploaded):
    rgb = np.zeros((300, 400, 3), np.uint8)
    rgb[:, 200:] = (250, 10, 10)  # right half red: the centre crop keeps both halves
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    image, view, caption = tab.choose_upload(uploaded(tmp_path / "photo.png"))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert view.shape == (32 * tab.MIX_SCALE, 32 * tab.MIX_SCALE, 3)
    assert image[16, 2].tolist() == [0, 0, 0] and image[16, 29, 0] > 200
    assert "your picture" in caption


def test_bad_upload_gives_a_clear_message(tmp_path, uploaded):
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    with pytest.raises(gr.Error, match="notes.png is not an image"):
        tab.choose_upload(uploaded(bad))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(gr.Error, match="empty"):
        tab.choose_upload(uploaded(empty))
    with pytest.raises(gr.Error, match="upload a picture again"):
        tab.choose_upload(None)


# ----------------------------------------------------------------------------- one transform


@pytest.mark.parametrize("name", list(augment.TRANSFORMS))
def test_each_transform_gives_n_upscaled_draws(horse, name):
    draws = preview(horse, name)
    assert len(draws) == tab.N_DRAWS
    for d in draws:
        assert d.shape == (BIG, BIG, 3) and d.dtype == np.uint8
    assert len(tab.default_values(name)) == len(augment.TRANSFORMS[name].params)


def test_no_image_yet_means_the_default_image(horse):
    assert all(np.array_equal(a, b) for a, b in zip(preview(None, "crop", 5), preview(horse, "crop", 5)))


def test_flip_probability_slider(horse):
    original = augment.upscale_nearest(horse, tab.SCALE)
    assert all(np.array_equal(d, original) for d in preview(horse, "flip", p=0.0))
    assert all(np.array_equal(d, original[:, ::-1]) for d in preview(horse, "flip", p=1.0))
    # the default p = 0.5: both kinds among 8 draws (seed 0)
    assert {np.array_equal(d, original) for d in preview(horse, "flip")} == {True, False}


def test_rotate_slider_changes_the_draws(horse):
    still = preview(horse, "affine", shift=0.0, scale=0.0, rotate=0, p=1.0)
    tilted = preview(horse, "affine", shift=0.0, scale=0.0, rotate=30, p=1.0)
    assert all(not np.array_equal(a, b) for a, b in zip(still, tilted))


@pytest.mark.parametrize("name,zero", [("crop", {"pad": 0}), ("cutout", {"size": 0})])
def test_zero_strength_leaves_the_image_alone(horse, name, zero):
    original = augment.upscale_nearest(horse, tab.SCALE)
    assert all(np.array_equal(d, original) for d in preview(horse, name, **zero))
    assert not all(np.array_equal(d, original) for d in preview(horse, name))


@pytest.mark.parametrize("name", ["crop", "affine", "autoaugment"])
def test_seeds_make_draws_reproducible(horse, name):
    first, again, other = preview(horse, name, 3), preview(horse, name, 3), preview(horse, name, 4)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_new_draws_button_moves_the_seed():
    assert tab.next_seed(0) == 1 and tab.next_seed(41.0) == 42


# ----------------------------------------------------------------------------- batch mixes


def mix(picks, method, random_draw=False, seed=0, **overrides):
    values = {k: p.default for k, p in tab.MIX_PARAMS[method].items()} | overrides
    return tab.mix_preview(picks, method, random_draw, seed, *values.values())


@pytest.mark.parametrize("method", list(tab.MIX_PARAMS))
@pytest.mark.parametrize("random_draw", [False, True])
def test_mix_gives_an_image_and_weights_over_the_chosen_classes(method, random_draw):
    picks = ["dog 2", "cat 2", "bird 4", "truck 3"]
    image, weights = mix(picks, method, random_draw)
    assert image.shape == (32 * tab.MIX_SCALE, 32 * tab.MIX_SCALE, 3) and image.dtype == np.uint8
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    used = {"dog", "cat"} if method != "ricap" else {"dog", "cat", "bird", "truck"}
    assert weights and set(weights) <= used and all(w > 0 for w in weights.values())


def test_mixup_lambda_slider_sets_the_label_shares():
    _, weights = mix(["dog 2", "cat 2"], "mixup", lam=0.7)
    assert weights == pytest.approx({"dog": 0.7, "cat": 0.3})
    _, weights = mix(["dog 2", "cat 2"], "mixup", lam=0.2)
    assert weights == pytest.approx({"dog": 0.2, "cat": 0.8})


def test_ricap_boundary_slider_sets_the_areas():
    _, weights = mix(["dog 2", "cat 2", "bird 4", "truck 3"], "ricap", boundary_y=0.5, boundary_x=0.25)
    # TL, TR, BL, BR rectangles from images 1, 2, 3, 4
    assert weights == pytest.approx({"dog": 0.125, "cat": 0.375, "bird": 0.125, "truck": 0.375})


def test_random_draws_follow_alpha_and_seed_not_lambda():
    a = mix(["dog 2", "cat 2"], "mixup", True, seed=7, lam=0.1)
    b = mix(["dog 2", "cat 2"], "mixup", True, seed=7, lam=0.9)
    c = mix(["dog 2", "cat 2"], "mixup", True, seed=8)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert a[1] != c[1]


def test_mix_needs_two_to_four_images():
    with pytest.raises(gr.Error, match="Pick 2 to 4"):
        mix(["dog 2"], "cutmix")
    with pytest.raises(gr.Error, match="Pick 2 to 4"):
        mix([], "ricap")


def test_soft_label_chart_shows_every_class():
    fig = tab.soft_label_figure({"dog": 0.7, "cat": 0.3})
    assert isinstance(fig, Figure)
    bars = fig.axes[0].patches
    assert [round(b.get_width(), 6) for b in bars] == [0.3 if c == "cat" else 0.7 if c == "dog" else 0.0
                                                        for c in CLASSES]
    image, chart = tab.mix_outputs(["dog 2", "cat 2"], "cutmix", False, 0, 0.7, 1.0)
    assert image.shape[0] == 32 * tab.MIX_SCALE and isinstance(chart, Figure)


def test_picked_thumbnails_are_captioned_in_order():
    thumbs = tab.picked_thumbnails(["dog 2", "cat 2"])
    assert [c for _, c in thumbs] == ["image 1: dog 2", "image 2: cat 2"]
    assert tab.picked_thumbnails(None) == []


def test_random_toggle_greys_out_the_ignored_sliders():
    hand = tab.random_toggle(False, "ricap")
    rand = tab.random_toggle(True, "ricap")
    assert [s.interactive for s in hand] == [True, True, False]
    assert [s.interactive for s in rand] == [False, False, True]


# ----------------------------------------------------------------------------- building


def test_build_loads_nothing(ctx):
    tab._sample.cache_clear()
    with gr.Blocks() as demo:
        tab.build(ctx)
    assert tab._sample.cache_info().currsize == 0  # images are decoded on page load, not at build
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert "Images to mix (MixUp and CutMix use the first two)" in labels
    sliders = [b for b in demo.blocks.values() if isinstance(b, gr.Slider)]
    expected = sum(len(t.params) for t in augment.TRANSFORMS.values())
    assert len(sliders) == expected + sum(len(p) for p in tab.MIX_PARAMS.values())


def test_every_slider_says_its_unit():
    """Issue 36: the units of each augmentation slider, for a student."""
    for info in augment.TRANSFORMS.values():
        for p in info.params.values():
            assert "(" in p.label and p.label.endswith(")"), (info.name, p.label)
