"""The registry: one ModelSpec per model, built only when `create` asks for it.

Each family file registers its models with `@register_model(...)` right beside the builder
(timm's @register_model), so the metadata lives next to the code it describes. Registering
stores a spec; nothing is constructed until `create(name)`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Union

import torch
from torch import nn

from ..common import CIFAR_MEAN, CIFAR_STD, to_unit

# A recipe is a partial TrainConfig: the keys it may set (RECIPE_KEYS: TrainConfig's training
# settings) and the names its values may take are the engine's one vocabulary (recipe.py).
from ..recipe import RECIPE_KEYS, TrainConfig
from ..reporting import tables
from .sources import Source

Builder = Union[Callable[..., nn.Module], str]  # a callable, or "package.module:function"
# ModelSpec.recipe_source -> how the tables say it.
RECIPE_ORIGINS = {"source": "the source's", "ours": "ours"}



@dataclass(frozen=True)
class ModelSpec:
    """What the zoo knows about a model without building it."""

    name: str
    family: str                 # module file in cifar_demo/zoo/
    source: str                 # where the architecture comes from, in a few words (project: the citation)
    reported_accuracy: float | None  # %, the source's figure on the official test set (None: ours)
    params: int                 # constants, checked against the built model by tests/test_zoo.py
    macs: int                   # multiply-accumulates for one 3x32x32 image
    recipe: dict[str, Any]      # TrainConfig overrides: the source's training settings (read-only)
    description: str
    builder: Builder
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD
    project: Source | None = None  # the cited source project (None: the model is ours)
    # Whose default recipe this is: "source" when every setting the source states is used as
    # stated (recipe_note names what it leaves out and what we filled in), "ours" when the
    # source states no recipe for the model or we changed what it states (the note says what).
    recipe_source: str = "ours"
    recipe_note: str = ""

    def __post_init__(self) -> None:
        if self.recipe_source not in RECIPE_ORIGINS:
            raise ValueError(f"{self.name}: recipe_source {self.recipe_source!r}; expected one of "
                             f"{', '.join(RECIPE_ORIGINS)}")
        if self.recipe_source == "source" and self.project is None:
            raise ValueError(f"{self.name}: a recipe from the source needs the source project cited")
        if self.reported_accuracy is not None and self.project is None:
            raise ValueError(f"{self.name}: a reported accuracy needs the source project that reports it")

    def build(self, **kwargs) -> nn.Module:
        fn = self.builder
        if isinstance(fn, str):
            module, _, attr = fn.partition(":")
            fn = getattr(importlib.import_module(module), attr)
        return normalize_inputs(fn(**kwargs), self.mean, self.std)


def normalize_inputs(model: nn.Module, mean, std) -> nn.Module:
    """Make `model` take pictures: uint8 or [0, 1] float NCHW batches, normalised by the model itself
    with its training data's per-channel mean and std (non-persistent buffers, so the state_dict
    and every weights file stay as they were). Callers then pass pictures, never statistics."""
    if not hasattr(model, "input_mean"):
        model.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
                              persistent=False)
        model.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
                              persistent=False)
        model.register_forward_pre_hook(_normalize_input)
    return model


def _normalize_input(model: nn.Module, args: tuple) -> tuple:
    # The same arithmetic as common.normalize, so scores are bit for bit those of normalising outside.
    x = to_unit(args[0])
    mean, std = model.input_mean.to(x.dtype), model.input_std.to(x.dtype)
    return ((x - mean) / std, *args[1:])


def recipe(*, epochs: int, batch_size: int, optimizer: str, lr: float, schedule: str,
           augment: str, **extra) -> dict[str, Any]:
    """A complete recipe: the six settings every source states, neutral values for the rest.

    Neutral means "off": no momentum, weight decay, smoothing, warmup, mixes, EMA, clipping
    or early stopping unless the source says so.
    """
    r = dict(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=0.0,
             nesterov=False, weight_decay=0.0, l1=0.0, label_smoothing=0.0, schedule=schedule,
             warmup_epochs=0, augment=augment, mixes={}, ema=0.0, grad_clip=0.0,
             early_stop_patience=0)
    r.update(extra)
    check_recipe(r)
    return r


def check_recipe(r: dict[str, Any]) -> None:
    """ValueError on a key that is not a TrainConfig training setting, or a value TrainConfig
    refuses (a name outside the vocabulary, a number out of range)."""
    unknown = sorted(set(r) - set(RECIPE_KEYS))
    if unknown:
        raise ValueError(f"unknown recipe key(s): {', '.join(unknown)}")
    try:
        TrainConfig.from_dict(dict(r)).check_values()
    except ValueError as e:
        raise ValueError(f"recipe: {e}") from None


_REGISTRY: dict[str, ModelSpec] = {}  # insertion order = table order


def register(spec: ModelSpec) -> ModelSpec:
    """Add a spec; a second spec under the same name is an error (it would shadow the first)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    check_recipe(spec.recipe)
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a spec (for tests and plugins)."""
    _REGISTRY.pop(name, None)


def register_model(**fields) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register the decorated builder under `fields` (family = its module's name)."""
    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        fields.setdefault("family", fn.__module__.rsplit(".", 1)[-1])
        register(ModelSpec(builder=fn, **fields))
        return fn
    return wrap


def specs() -> list[ModelSpec]:
    """Every spec, in table order. Builds nothing."""
    return list(_REGISTRY.values())


def names() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def create(name: str, **kwargs) -> nn.Module:
    """Build model `name`; kwargs go to its builder (every builder takes num_classes)."""
    return get_spec(name).build(**kwargs)


# ---------------------------------------------------------------------------- tables


def recipe_summary(r: dict[str, Any]) -> str:
    """One line, e.g. "sgd lr0.05 x20ep bs128 step", plus the extras that are on."""
    opt = "sgd-nesterov" if r.get("optimizer") == "sgd" and r.get("nesterov") else r.get("optimizer", "")
    parts = [opt,
             f"lr{r['lr']:g}" if "lr" in r else "",
             f"x{r['epochs']}ep" if "epochs" in r else "",
             f"bs{r['batch_size']}" if "batch_size" in r else "",
             r.get("schedule", ""),
             f"wd{r['weight_decay']:g}" if r.get("weight_decay") else "",
             f"ls{r['label_smoothing']:g}" if r.get("label_smoothing") else "",
             f"aug:{r['augment']}" if r.get("augment", "none") != "none" else "",
             "+".join(sorted(r.get("mixes") or {})),
             f"ema{r['ema']:g}" if r.get("ema") else ""]
    return " ".join(p for p in parts if p)


def specs_as_dicts(specs_: Iterable[ModelSpec] | None = None) -> list[dict[str, Any]]:
    """JSON-ready dicts (the builder as "module:function")."""
    out = []
    for s in specs() if specs_ is None else specs_:
        b = s.builder if isinstance(s.builder, str) else f"{s.builder.__module__}:{s.builder.__qualname__}"
        out.append(dict(name=s.name, family=s.family, source=s.source,
                        reported_accuracy=s.reported_accuracy, params=s.params, macs=s.macs,
                        recipe={k: (dict(v) if isinstance(v, dict) else v) for k, v in s.recipe.items()},
                        mean=list(s.mean), std=list(s.std), description=s.description, builder=b,
                        project=None if s.project is None else dict(title=s.project.title, url=s.project.url),
                        recipe_source=s.recipe_source, recipe_note=s.recipe_note))
    return out


def spec_cells(s: ModelSpec) -> dict[str, str]:
    """One model's registry figures as table cells: the CLI's table and the README's share them."""
    return {"params": f"{s.params:,}", "macs": f"{s.macs / 1e6:,.1f}M",
            "reported": "-" if s.reported_accuracy is None else f"{s.reported_accuracy:.2f}%",
            "recipe": f"{recipe_summary(s.recipe)} ({RECIPE_ORIGINS[s.recipe_source]})"}


def provenance_markdown(s: ModelSpec) -> str:
    """Where a model comes from and whose its default recipe is, as one Markdown sentence pair:
    the README's provenance list and the Model zoo tab both show it."""
    cited = f"Source project: {s.project.markdown()}" if s.project is not None else "Ours, from no source project"
    return f"{cited}. Default recipe: {RECIPE_ORIGINS[s.recipe_source]}. {s.recipe_note}".rstrip()


def format_table(specs_: Iterable[ModelSpec] | None = None, fmt: str = "text") -> str:
    """The zoo as a text table (aligned columns) or a Markdown table."""
    head = ["model", "source", "params", "MACs", "reported acc", "recipe"]
    rows = []
    for s in specs() if specs_ is None else specs_:
        c = spec_cells(s)
        rows.append([s.name, s.source, c["params"], c["macs"], c["reported"], c["recipe"]])
    return tables.render(head, rows, right={2, 3, 4}, fmt=fmt)  # numbers align right
