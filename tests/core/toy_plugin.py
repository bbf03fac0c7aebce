"""A small in-process plugin used by the core tests: a CNN with a stateful centre loss."""

import keras

from ferzoo import LossSpec, ModelSpec, hookimpl
from ferzoo.losses import AuxiliaryLoss


@keras.saving.register_keras_serializable(package="ferzoo_tests")
class ToyCentreLoss(AuxiliaryLoss):
    requires = ("features",)

    def __init__(self, num_classes=7, dim=8, weight=0.5, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.num_classes, self.dim = num_classes, dim
        self.centres = self.add_weight(shape=(num_classes, dim), initializer="random_normal", name="centres")

    def compute(self, y_true, outputs, sample_weight=None):
        y = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        c = keras.ops.take(self.centres, y, axis=0)
        return keras.ops.mean(keras.ops.sum(keras.ops.square(outputs["features"] - c), axis=-1))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim}


@keras.saving.register_keras_serializable(package="ferzoo_tests")
class ToyRuleCentreLoss(AuxiliaryLoss):
    """Centre loss whose centres follow Wen et al.'s rule (no gradient): the core's rule-update path."""

    requires = ("features",)

    def __init__(self, num_classes=7, dim=8, rate=0.5, weight=0.5, **kwargs):
        super().__init__(weight=weight, **kwargs)
        self.num_classes, self.dim, self.rate = num_classes, dim, rate
        self.centres = self.add_state("centres", (num_classes, dim))

    def compute(self, y_true, outputs, sample_weight=None):
        y = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        c = keras.ops.stop_gradient(keras.ops.take(self.centres, y, axis=0))
        return keras.ops.mean(keras.ops.sum(keras.ops.square(outputs["features"] - c), axis=-1))

    def update(self, y_true, outputs, sample_weight=None):
        from ferzoo.losses import centre_loss_update

        return [(self.centres, centre_loss_update(self.centres, outputs["features"], y_true, self.rate))]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "dim": self.dim, "rate": self.rate}


def toy_rule_losses(num_classes, width=8, dropout=0.0):
    return [ToyRuleCentreLoss(num_classes, width, name="rule_centre")]


def build_toy(x, num_classes, width=8, dropout=0.0):
    x = keras.layers.Conv2D(width, 3, activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(width, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    f = keras.layers.Dense(width, activation="relu", name="embed")(keras.layers.Flatten(name="flat")(x))
    if dropout:
        f = keras.layers.Dropout(dropout)(f)
    return {"logits": keras.layers.Dense(num_classes, name="fc")(f), "features": f}


def toy_losses(num_classes, width=8, dropout=0.0):
    return [ToyCentreLoss(num_classes, width, name="centre")]


class ToyPlugin:
    __version__ = "9.9"

    @hookimpl
    def register_models(self, register):
        register(ModelSpec(
            name="toy", builder=build_toy, losses=toy_losses, default_input_shape=(16, 16, 1),
            channels=(1, 3), min_size=8, default_config={"width": 8, "dropout": 0.0}, mean=(0.5,), std=(0.25,),
            recipes={"default": {"optimizer": {"class_name": "adam", "config": {"learning_rate": 0.01}},
                                 "epochs": 2, "batch_size": 16, "loss_weights": {"centre": 0.1}},
                     "stepped": {"schedule": {"type": "step", "step_epochs": 1, "gamma": 0.5}},
                     "cosine": {"epochs": 4, "schedule": {"type": "cosine", "epochs": 4, "min_lr": 0.001}}},
            description="toy model for tests"))
        register(ModelSpec(
            name="toy_rule", builder=build_toy, losses=toy_rule_losses, default_input_shape=(16, 16, 1),
            channels=(1, 3), min_size=8, default_config={"width": 8, "dropout": 0.0}, mean=(0.5,), std=(0.25,),
            recipes={"default": {"optimizer": {"class_name": "sgd", "config": {"learning_rate": 0.05}},
                                 "epochs": 2, "batch_size": 16, "loss_weights": {"rule_centre": 0.1}},
                     "synthetic": {"config": {"width": 6}, "val_split": "test",
                                   "protocol": {"keep": "last", "report_mean_last": 2}},
                     "plateau": {"protocol": {"reduce_on_plateau": {"monitor": "val_loss", "factor": 0.5,
                                                                    "patience": 0, "reload_best": True,
                                                                    "min_delta": 1e9}}},
                     "cropped": {"load_size": [20, 20]},
                     "flipped": {"protocol": {"tta": "flip"}}},
            description="toy model whose centres follow an update rule"))

    @hookimpl
    def register_losses(self, register):
        register(LossSpec(name="toy_centre", factory=ToyCentreLoss))
