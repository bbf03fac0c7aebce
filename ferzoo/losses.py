"""Base class for auxiliary losses that need more than the logits (features, heads) and may own state."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ferzoo")
class AuxiliaryLoss(keras.layers.Layer):
    """A training loss term computed from the labels and the model's output dict.

    Subclasses implement :meth:`compute` and may own trainable state (class centres) created in
    ``__init__`` or :meth:`build`; that state is tracked by the model, trained by the model's optimizer and
    stored with its weights. ``weight`` is the default factor in the total loss (the recipe or
    ``model.compile(aux_loss_weights=...)`` may override it). ``compute`` returns the unweighted scalar.
    """

    #: output keys of the model this loss reads (checked when the model is built)
    requires: tuple[str, ...] = ()

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def build(self, input_shape=None):
        self.built = True

    def compute(self, y_true, outputs: dict, sample_weight=None):
        raise NotImplementedError

    def call(self, y_true, outputs, sample_weight=None):
        return self.compute(y_true, outputs, sample_weight)

    def get_config(self):
        config = super().get_config()
        config["weight"] = self.weight
        return config
