"""The Inside-the-network tab's handlers without a browser: what a page may send is checked, and a
refusal says nothing about what exists on the server."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from cifar_demo import weights
from cifar_demo.ui import inside_map, inside_tab
from cifar_demo.ui.context import AppContext

pytestmark = pytest.mark.skipif("simple_cnn" not in weights.available(), reason="no shipped simple_cnn weights")


@pytest.mark.parametrize("choice", [None, 3, "weights:nope", "weights:../../etc/passwd", "run:x", "run:../a",
                                    "file:/etc/passwd", "airnet"])
def test_a_choice_that_is_not_on_the_list_is_refused_with_one_message(ctx, choice):
    with pytest.raises(gr.Error) as e:
        inside_tab.target_of(ctx, choice)
    assert "from the list" in str(e.value)


def test_layers_of_a_shipped_model_on_the_default_picture(ctx: AppContext):
    rows, grids, fig, text, filters, caption, stages = inside_tab.show_layers(ctx, "weights:simple_cnn", None, 8)
    assert rows[0][1] == "Conv2d" and len(rows) == 12
    assert grids.count("<img") == 1 + 3       # the input and three map stages
    assert "simple_cnn" in text and filters.shape[2] == 3 and "32 filters of 3x3" in caption
    with pytest.raises(gr.Error):
        inside_tab.show_layers(ctx, "weights:simple_cnn", None, 7)        # not one of CHANNELS
    image = np.zeros((32, 32, 3), np.uint8)
    for bad in (-1, 9, "0", True):
        with pytest.raises(gr.Error):
            inside_tab.cached_favourites(ctx, "weights:simple_cnn", image, bad, 8)


def test_runs_and_points_refuse_what_is_not_theirs(ctx: AppContext):
    for bad in ("../x", "no-such-run", 5):
        with pytest.raises(gr.Error, match="your runs"):
            inside_tab.show_epoch(ctx, bad, 1)
    with pytest.raises(gr.Error, match="Draw the maps first"):
        inside_map.point(ctx, None, "a", 0)
    with pytest.raises(gr.Error):
        inside_map.point(ctx, {"a": "weights:simple_cnn", "b": "weights:simple_cnn", "n": 100}, "c", 0)
    with pytest.raises(gr.Error):
        inside_map.cached_maps(ctx, "weights:simple_cnn", "weights:simple_cnn", "umap", 100)
    with pytest.raises(gr.Error):
        inside_map.cached_maps(ctx, "weights:simple_cnn", "weights:simple_cnn", "tsne", 5000)
    assert inside_tab.sample_image(0).shape == (32, 32, 3)
    for bad in (-1, 50, "1", None):
        with pytest.raises(gr.Error):
            inside_tab.sample_image(bad)


def test_the_inspect_command_writes_the_pictures(tmp_path, capsys):
    from cifar_demo.cli import main

    out = tmp_path / "inside"
    assert main(["inspect", "--model", "simple_cnn", "cifar_demo/assets/sample/cat/0000.png", "--out", str(out),
                 "--channels", "8"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names[:3] == ["answer.png", "architecture.md", "filters.png"] and len(names) == 3 + 3 + 2
    assert "stage_03_5.png" in names and "simple_cnn: " in capsys.readouterr().out
    assert main(["inspect", "--model", "simple_cnn", "--run", "x", "a.png", "--out", str(out)]) == 2
