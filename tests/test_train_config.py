"""TrainConfig and the one vocabulary: the rules validate() owns, presets, zoo recipes as
partial TrainConfigs, and every name in every list doing something in the engine."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cifar_demo import augment, zoo
from cifar_demo import train as engine
from cifar_demo.__main__ import build_parser
from cifar_demo.analysis import evaluate
from cifar_demo.data import Split
from cifar_demo.train import TrainConfig, make_config, validate
from cifar_demo.train.parts import make_loader

from .helpers import MODEL, cfg, lr_trace, synthetic_arrays, to_split

# ------------------------------------------------------------------------ config


def test_config_round_trips_through_json():
    c = cfg(mixes={"mixup": 0.3, "cutmix": 0.3}, ema=0.99, l1=1e-5)
    assert TrainConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({**c.to_dict(), "lerning_rate": 1})


def test_validate_owns_the_rules_the_app_and_the_cli_check():
    # Each refused with a message the Train tab shows as is (it calls validate(), nothing else).
    with pytest.raises(ValueError, match="smaller than one batch"):
        validate(cfg(train_limit=30, batch_size=40))
    validate(cfg(train_limit=40, batch_size=40))
    with pytest.raises(ValueError, match="fp16 autocast is for CUDA; use bf16 on CPU"):
        validate(cfg(precision="fp16", device="cpu"))
    with pytest.raises(ValueError, match="augment must be one of"):
        validate(cfg(augment="randaugment"))
    with pytest.raises(ValueError, match="mixes must be among"):
        validate(cfg(mixes={"mosaic": 0.5}))
    with pytest.raises(ValueError, match="sum to <= 1"):
        validate(cfg(mixes={"mixup": 0.6, "cutmix": 0.6}))
    with pytest.raises(ValueError, match="tta must be one of"):
        validate(cfg(tta="flip_rotate"))
    with pytest.raises(ValueError, match="unknown model"):
        validate(cfg(model="resnet1000"))


def test_preset_then_flags_override():
    c = make_config("optimized200k", epochs=3)
    assert c.preset == "optimized200k" and c.epochs == 3
    recipe = engine.presets()["optimized200k"]
    assert c.lr == recipe["lr"] and c.schedule == recipe["schedule"]
    # no preset named: the model's own recipe is the default
    assert make_config(model="simple_cnn").optimizer == engine.presets()["simple_cnn"]["optimizer"]
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("nope")
    with pytest.raises(ValueError, match="optimizer must be"):
        make_config(model=MODEL, optimizer="rmsprop")


# ------------------------------------------------------------------------ recipes


def test_zoo_recipes_are_partial_train_configs():
    assert "warmup_from" in zoo.RECIPE_KEYS   # a training setting, not a run's (recipe.RUN_FIELDS)
    for spec in zoo.specs():
        c = make_config(model=spec.name)  # the model's preset validates...
        assert {k: getattr(c, k) for k in spec.recipe} == spec.recipe  # ...and every key of it lands
    # Any training setting may be in a recipe; what says where a run runs may not.
    zoo.check_recipe({k: getattr(TrainConfig(), k) for k in zoo.RECIPE_KEYS})
    for key in ("seed", "device", "data", "model"):
        with pytest.raises(ValueError, match="unknown recipe key"):
            zoo.check_recipe({key: getattr(TrainConfig(), key)})
    # Values are held to TrainConfig's own rules and names.
    with pytest.raises(ValueError, match="augment must be one of"):
        zoo.check_recipe({"augment": "translate3"})
    with pytest.raises(ValueError, match="lr must be > 0"):
        zoo.check_recipe({"lr": -1.0})
    zoo.check_recipe({"augment": "translate2_altflip"})  # a name the old recipe list lacked


# ------------------------------------------------------------------------ every name does something


def _small_split(n_per_class: int = 2) -> Split:
    return to_split(*synthetic_arrays(n_per_class, seed=5))


@pytest.mark.parametrize("name", engine.AUGMENTATIONS)
def test_every_augmentation_name_feeds_the_engine_batches(name):
    c = cfg(augment=name, batch_size=8, num_workers=0)
    loader = make_loader(c, _small_split(), torch.device("cpu"))
    images, labels = next(iter(loader.iter_from(0, 0)))
    assert images.shape == (8, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (8,)
    assert augment.preset_kind(name) in augment.KINDS


@pytest.mark.parametrize("name", engine.OPTIMIZERS)
def test_every_optimizer_name_takes_a_step(name):
    torch.manual_seed(0)
    model, x, y = nn.Linear(8, 10), torch.randn(16, 8), torch.randint(0, 10, (16,))
    c = cfg(optimizer=name, lr=0.01)
    opt = engine.build_optimizer(c, model)
    before = model.weight.detach().clone()

    def forward():
        logits = model(x)
        return logits, engine.training_loss(c, logits, y)

    engine.optimizer_step(c, opt, engine.grad_scaler(None, torch.device("cpu")), model.parameters(), forward)
    assert not torch.equal(model.weight, before)


@pytest.mark.parametrize("name", engine.SCHEDULES)
def test_every_schedule_name_drives_the_learning_rate(name):
    c = cfg(schedule=name, epochs=4, step_size=2, final_lr_frac=0.1)
    lrs = [g["main"] for g in lr_trace(c, nn.Linear(2, 2), 40, 10)]
    assert all(0 < lr <= c.lr * (1 + 1e-9) for lr in lrs)
    assert (len(set(lrs)) == 1) == (name == "constant")  # every other schedule moves it


@pytest.mark.parametrize("name", engine.TTA_MODES)
def test_every_tta_name_scores_a_model(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    res = evaluate.evaluate(model, _small_split(), tta=name, device="cpu")
    assert res.n == 20 and 0 <= res.accuracy <= 1


@pytest.mark.parametrize("name", engine.PRECISIONS)
def test_every_precision_name_resolves_on_a_cpu_or_says_why_not(name):
    if name == "fp16":
        with pytest.raises(ValueError, match="use bf16 on CPU"):
            engine.autocast_dtype(name, torch.device("cpu"))
    else:
        assert engine.autocast_dtype(name, torch.device("cpu")) in (None, torch.bfloat16)


@pytest.mark.parametrize("name", engine.MIXES)
def test_every_mix_name_blends_a_batch(name):
    images, labels = to_split(*synthetic_arrays(1, seed=6)).images.float(), torch.arange(10)
    mixer = augment.BatchMixer({name: 1.0}, num_classes=10)
    mixer.generator = torch.Generator().manual_seed(0)
    mixed, soft = mixer(images, labels)
    assert mixed.shape == images.shape and soft.shape == (10, 10) and (soft.max(1).values < 1).any()


def test_the_cli_offers_every_name_and_refuses_others(capsys):
    parser = build_parser()
    for field, names in engine.CHOICES.items():
        flag = "--" + field.replace("_", "-")
        for name in names:
            assert getattr(parser.parse_args(["train", flag, name]), field) == name
        with pytest.raises(SystemExit):
            parser.parse_args(["train", flag, "no-such-name"])
        assert "invalid choice" in capsys.readouterr().err


def test_validate_refuses_a_val_size_that_leaves_no_cifar_training_images():
    for val_size in (50_000, 1_000_000):
        with pytest.raises(ValueError, match="leaves no training images"):
            validate(TrainConfig(model=MODEL, val_size=val_size))
    validate(TrainConfig(model=MODEL, val_size=49_000))


def test_validate_refuses_a_batch_that_cannot_fit_this_machines_memory(monkeypatch):
    from cifar_demo.train import checks

    assert checks.free_memory(torch.device("cpu")) > 0           # /proc/meminfo or the free pages
    monkeypatch.setattr(checks, "free_memory", lambda device: 4 * 2**30)
    with pytest.raises(ValueError, match=r"a batch of 45,000 airnet images needs about \d+\.\d GB.*"
                                         r"4\.0 GB free: lower the batch size \(about [\d,]+ would fit\)"):
        validate(TrainConfig(model="airnet", batch_size=45_000))
    validate(TrainConfig(model="airnet", batch_size=1024))        # the airbench preset's batch fits 4 GB
    per_image, fixed = checks.training_bytes(TrainConfig(model="airnet"))
    assert 1e5 < per_image < 1e7 and fixed > 0                     # a few MB an image, measured once
