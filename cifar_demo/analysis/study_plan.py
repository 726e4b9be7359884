"""The recipes an A/B study compares, its budget, and its plan of runs (analysis.compare uses them)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..train import MIXES, TrainConfig, make_config

MIX_OFF = "off"
MIX_CHOICES: tuple[str, ...] = (MIX_OFF, *MIXES)
# A recipe's mix, when on, is applied to this share of the batches: half keeps clean batches in
# every epoch, which matters on a budget of a few epochs (a mix on every batch learns slower).
MIX_PROB = 0.5
MAX_SEEDS = 3
KEYS = ("A", "B")


@dataclass(frozen=True)
class Recipe:
    """A named set of TrainConfig overrides: what the A/B test varies."""

    name: str = "A"
    augment: str = "standard"          # a name of config.AUGMENTATIONS
    mix: str = MIX_OFF                 # "off" or a name of config.MIXES (applied to MIX_PROB of batches)
    label_smoothing: float = 0.0

    def overrides(self) -> dict:
        return {"augment": self.augment, "mixes": {} if self.mix == MIX_OFF else {self.mix: MIX_PROB},
                "label_smoothing": float(self.label_smoothing)}

    def describe(self) -> str:
        mix = "no batch mix" if self.mix == MIX_OFF else f"{self.mix} on {MIX_PROB:.0%} of batches"
        aug = "no augmentation" if self.augment == "none" else f"{self.augment} augmentation"
        return f"{aug}, {mix}, label smoothing {self.label_smoothing:g}"

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        return cls(**d)


@dataclass(frozen=True)
class Budget:
    """How much each run trains. The defaults take 2-3 minutes a run for simple_cnn on this
    project's 2 shared CPU cores (measured: see ui/compare_tab.py), and the curves separate."""

    epochs: int = 3
    train_limit: int = 2000            # a stratified subset of the training images
    val_size: int = 1000               # held out of the training set: what the comparison reads
    # The engine scores the test set when a run ends; the study never reads it, so a small
    # slice saves time without hiding anything.
    test_limit: int = 500
    # "auto" means bf16 autocast on a CPU, which is emulated (5-8x slower than fp32, measured
    # with bench/train_step.py) on CPUs without native bf16 such as this AMD EPYC; where bf16 is
    # native it is 1.8x faster. fp32 risks the smaller loss.
    precision: str = "fp32"


def plan(model: str, recipe_a: Recipe, recipe_b: Recipe, seeds: int, budget: Budget = Budget(),
         data: str | None = None) -> list[TrainConfig]:
    """The study's runs, interleaved A0, B0, A1, B1, ...: a study stopped half way is still balanced.

    Every config comes from train.make_config (the model's own recipe, then the budget, the
    recipe's overrides and the seed) and is validated, so a bad recipe is refused before
    anything starts (ValueError naming the recipe). The same seed gives A and B the same
    validation split, training subset and initial weights: a pair differs only by its recipe."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"seeds must be a whole number from 1 to {MAX_SEEDS}")
    out = []
    for seed in range(seeds):
        for key, recipe in zip(KEYS, (recipe_a, recipe_b)):
            try:
                out.append(make_config(None, model=model, data=data, seed=seed, **asdict(budget),
                                       **recipe.overrides()))
            except (ValueError, TypeError) as e:
                raise ValueError(f"recipe {key} ({recipe.name}): {e}") from None
    return out
