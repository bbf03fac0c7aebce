"""pluggy hook specifications of the ``ferzoo`` entry-point group.

A plugin is a module (or object) with functions decorated by :data:`hookimpl`. Each hook receives a
``register`` callback, in the style of llm's ``register_models(register)``; calling it adds one entry to the
zoo. Hooks must be cheap: register *specs* (names, metadata and ``"module:attr"`` builder paths) and import
TensorFlow only inside the builders, so that ``ferzoo.list_models()`` stays fast.
"""

from __future__ import annotations

import pluggy

PROJECT = "ferzoo"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_models(register):
    """Register models: ``register(ferzoo.ModelSpec(...))``."""


@hookspec
def register_losses(register):
    """Register losses: ``register(ferzoo.LossSpec(...))``."""


@hookspec
def register_datasets(register):
    """Register data set readers: ``register(ferzoo.DatasetSpec(...))``."""


@hookspec
def register_weights(register):
    """Register weight entries (cards): ``register(model_name, tag, card_dict)``."""
