"""The model zoo: `create(name)` builds a model, `specs()` describes all of them without building.

    from cifar_demo import zoo
    zoo.names()                      # ['quiz_dnn', 'simple_cnn', ..., 'airnet']
    model = zoo.create("resnet18")   # an nn.Module: (N,3,32,32) normalised -> (N,10) logits
    print(zoo.format_table(zoo.specs()))

One file per model family; each registers its models with @register_model beside the
builder. Importing the families defines classes and functions only: no model is built.
"""

from __future__ import annotations

# Import order = table order.
from .analysis import activation_floats, count_macs, count_params, last_feature_map, receptive_field
from .hooks import InitFromData, OwnGroup, OwnsParamGroups
from .registry import (
                       RECIPE_KEYS,
                       ModelSpec,
                       check_recipe,
                       create,
                       format_table,
                       get_spec,
                       names,
                       recipe,
                       recipe_summary,
                       register,
                       register_model,
                       specs,
                       specs_as_dicts,
                       unregister,
)

# Import order = table order (the families register their models as they are imported).
# isort: off
from . import quiz_dnn, simple_cnn, keras_cnn, custom_cnn, resnet, optimized200k, airnet  # noqa: E402,F401
# isort: on

__all__ = [
    "InitFromData", "ModelSpec", "OwnGroup", "OwnsParamGroups", "RECIPE_KEYS", "activation_floats", "check_recipe",
    "count_macs",
    "count_params", "create", "format_table", "get_spec", "last_feature_map", "names", "receptive_field",
    "recipe", "recipe_summary", "register", "register_model", "specs", "specs_as_dicts", "unregister",
]
