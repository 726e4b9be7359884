"""Progressive resizing (TrainConfig.low_res / low_res_epochs): the downscaled batches, which
epochs get them, the refusals, and airnet's pooling on any map size."""

from __future__ import annotations

import pytest
import torch

from cifar_demo import zoo
from cifar_demo.recipe import LOW_RES_MODES
from cifar_demo.train import validate
from cifar_demo.train.parts import downscale, random_crop

from .helpers import MODEL, cfg, run


def test_downscale_averages_pixels_and_keeps_the_memory_format():
    # A 1-pixel checkerboard has mean 0: antialiased bilinear shrinks it to (nearly) flat grey,
    # where plain sampling would keep a pattern of +-1.
    board = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1
    x = board.expand(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    small = downscale(x, 16)
    assert small.shape == (2, 3, 16, 16) and small.is_contiguous(memory_format=torch.channels_last)
    assert small.abs().max() < 0.05
    flat = torch.full((1, 3, 32, 32), 0.7)
    assert torch.allclose(downscale(flat, 24), torch.full((1, 3, 24, 24), 0.7))


def test_random_crop_cuts_a_window_at_full_scale_anywhere_in_each_image():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    crops = random_crop(x, 24)
    assert crops.shape == (64, 3, 24, 24) and crops.is_contiguous(memory_format=torch.channels_last)
    offsets = set()
    for image, crop in zip(x, crops):
        found = [(t, le) for t in range(9) for le in range(9) if torch.equal(crop, image[:, t:t + 24, le:le + 24])]
        assert len(found) == 1, "each crop is exactly one window of its own image, pixels unchanged"
        offsets.add(found[0])
    assert len(offsets) > 20, "each image draws its own window"
    assert random_crop(torch.randn(2, 3, 32, 32), 16).is_contiguous()


def test_airnet_pools_over_the_whole_last_map():
    # 32x32 leaves a 3x3 map, as airbench's MaxPool2d(3) expects; smaller images leave less.
    model = zoo.create("airnet").eval()
    with torch.no_grad():
        whitened = torch.nn.functional.gelu(model.whiten(torch.randn(2, 3, 32, 32)))
        feats = model.group3(model.group2(model.group1(whitened)))
        assert feats.shape[-2:] == (3, 3)
        assert torch.equal(feats.amax((2, 3)), torch.nn.functional.max_pool2d(feats, 3).flatten(1))
        for size in (16, 24, 28):
            assert model(torch.randn(2, 3, size, size)).shape == (2, 10)


def test_config_refuses_half_settings_and_a_run_with_no_full_size_epoch():
    for bad, message in ((dict(low_res=16), "together"), (dict(low_res_epochs=1, epochs=3), "together"),
                         (dict(low_res=4, low_res_epochs=1, epochs=3), ">= 8"),
                         (dict(low_res=16, low_res_epochs=3, epochs=3), "last epoch at full size"),
                         (dict(low_res=16, low_res_epochs=1, epochs=3, low_res_mode="zoom"), "low_res_mode")):
        with pytest.raises(ValueError, match=message):
            validate(cfg(**bad))
    validate(cfg(low_res=16, low_res_epochs=2, epochs=3))


@pytest.mark.parametrize("mode", LOW_RES_MODES)
def test_only_the_first_epochs_train_on_small_images(tmp_path, tiny_data, monkeypatch, mode):
    seen: list[tuple[int, ...]] = []
    real_forward = zoo.create(MODEL).__class__.forward

    def recording_forward(self, x):
        if self.training:
            seen.append(tuple(x.shape[-2:]))
        return real_forward(self, x)

    monkeypatch.setattr(zoo.create(MODEL).__class__, "forward", recording_forward)
    result, _ = run(cfg(epochs=3, low_res=16, low_res_epochs=2, low_res_mode=mode), tmp_path, tiny_data)
    assert result["status"] == "finished"
    steps = len(tiny_data.train) // 40            # 360 images, batch 40, drop_last
    assert seen == [(16, 16)] * (2 * steps) + [(32, 32)] * steps


def test_a_model_that_cannot_take_small_images_is_refused_before_training(tmp_path, tiny_data):
    # simple_cnn flattens a fixed-size map into its first Linear layer.
    with pytest.raises(ValueError, match="cannot train on 16x16 images"):
        run(cfg(model="simple_cnn", epochs=2, low_res=16, low_res_epochs=1), tmp_path, tiny_data)
    with pytest.raises(ValueError, match="below the images' size"):
        run(cfg(epochs=2, low_res=32, low_res_epochs=1), tmp_path, tiny_data)
