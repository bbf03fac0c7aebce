"""Augmentation recipes from Keras preprocessing layers, and class-rebalancing samplers.

A recipe's ``augmentation`` is a dict of named operations, applied to batches of 0..255 float images in
this order (every key is optional; a false / zero value switches the operation off):

=================  ===================================================================================
``flip``           ``true``: horizontal flip with p = 0.5, per image
``rotation``       max degrees, U(-d, d), fill nearest (``keras.layers.RandomRotation``)
``zoom``           max fraction z, U(-z, z), fill nearest (``keras.layers.RandomZoom``)
``translate``      max fraction of H and W, fill nearest (``keras.layers.RandomTranslation``)
``shear``          max x-shear angle in **degrees** about the image centre, U(-a, a), fill nearest
                   (torchvision ``RandomAffine(shear=a)`` semantics; ``keras.layers.RandomShear`` shears
                   about the top-left corner by a fraction, so it is not used). A mapping
                   ``{"degrees": a}`` or ``{"radians": r}``, optionally with ``"y"`` (degrees) too.
``affine``         one torchvision-style ``RandomAffine`` per image: mapping with ``degrees`` (max),
                   ``translate`` ([fx, fy] fractions), ``scale`` ([lo, hi]), ``shear`` (max x degrees),
                   ``fill`` ("constant" / "nearest" / "reflect"), ``fill_value`` (raw pixel value, 0),
                   ``p`` (probability the transform is applied to an image, 1.0)
``crop_padding``   pixels p of zero padding before a random crop back to size, a fresh crop per image
                   (torchvision ``RandomCrop(size, padding=p)``; ``keras.layers.RandomCrop`` draws one
                   offset per batch, so it is not used)
``random_apply``   ``{"p": p, "ops": {...}}``: the nested operations, applied to each image with
                   probability p (DAN's "with p 0.2: rotation then padded crop"); a list of such
                   mappings applies several groups in turn
``contrast``       max factor (``keras.layers.RandomContrast``)
``brightness``     max factor (``keras.layers.RandomBrightness``)
``erasing``        probability of ``keras.layers.RandomErasing`` (Keras' own parameters)
``random_erasing`` torchvision ``RandomErasing`` semantics: a mapping with ``p`` (0.5), ``scale``
                   ([0.02, 0.33], fraction of the area), ``ratio`` ([0.3, 3.3], aspect ratio, sampled
                   log-uniformly), ``value`` (raw pixel value, a per-channel list, or ``"random"``
                   for uniform noise; 0). Up to 10 tries for a rectangle that fits, else no erasing.
                   torchvision's ``value=0`` *after* ``Normalize`` is the per-channel mean: pass
                   ``value = 255 * mean`` (e.g. ``[123.675, 116.28, 103.53]`` for ImageNet). ``true``
                   means the torchvision defaults.
``box_jitter``     the face as a detector's box cuts it (applied right after ``flip``): a mapping with
                   ``scale`` ([lo, hi]: the crop box's side relative to the face's own box, U(lo, hi);
                   1.2 shows the face at 1/1.2 of its size with more surroundings), ``shift`` (fraction
                   f of the box side: the box centre moves U(-f, f) in x and in y independently, so the
                   face centre moves by at most f / scale of the image side), ``fill`` (``"reflect"``,
                   default, or ``"nearest"``: the uncovered border continues the image) and ``p``
                   (probability per image, 1.0). One zoom + translation per image.
``blur``           Gaussian blur per image: ``{"p": p, "sigma": [lo, hi]}`` (sigma in pixels, U(lo, hi),
                   separable kernel of radius ceil(3 hi), symmetric edges); a number means
                   ``{"p": 0.5, "sigma": [0.1, value]}``. Applied after ``brightness``.
``gamma``          per-image exposure: ``{"p": p, "range": [lo, hi]}``, x -> 255 (x / 255) ** g with g
                   log-uniform in [lo, hi] (g < 1 brightens the shadows). Applied after ``blur``.
                   (``contrast`` above is already drawn per image: Keras 3's ``RandomContrast`` draws
                   one factor per image of the batch.)
=================  ===================================================================================

Every operation draws independently per image, takes and returns 0..255 floats of any channel count, and
runs inside ``tf.data`` maps and ``tf.function``; a ``seed`` makes a freshly built pipeline repeat its draws.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

KNOWN = ("flip", "rotation", "zoom", "translate", "shear", "affine", "crop_padding", "random_apply", "contrast",
         "brightness", "erasing", "random_erasing", "box_jitter", "blur", "gamma")


def build_augmentation(spec: Mapping, input_shape: Sequence[int], seed: int | None = None):
    """A callable ``images (B, H, W, C) float 0..255 -> augmented images`` (or ``None`` for no operation)."""
    layers = _layers(spec, input_shape, seed)
    if not layers:
        return None
    import keras

    pipeline = keras.Sequential(layers, name="augmentation")

    def apply(images):
        return tf.clip_by_value(pipeline(images, training=True), 0.0, 255.0)

    apply.pipeline = pipeline
    return apply


def describe_augmentation(spec: Mapping | None) -> str:
    """The operations a recipe's ``augmentation`` switches on (in :data:`KNOWN`'s order), one ``name value`` each
    (``"flip, rotation 8, contrast 0.2"``; ``"none"``): what ``ferzoo train`` prints, so that keys inherited
    from the default recipe (recipes merge key by key) are visible before the first epoch."""
    on = [(k, v) for k, v in (spec or {}).items() if v not in (None, False, 0, {}, [])]
    if not on:
        return "none"
    order = {k: i for i, k in enumerate(KNOWN)}

    def text(value):
        if value is True:
            return ""
        if isinstance(value, Mapping):
            return " {" + ", ".join(f"{k} {text(v).strip() or 'true'}" for k, v in value.items()) + "}"
        if isinstance(value, (list, tuple)):
            return " [" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
        return f" {value:g}" if isinstance(value, float) else f" {value}"

    return ", ".join(f"{k}{text(v)}" for k, v in sorted(on, key=lambda kv: order.get(kv[0], len(order))))


def _layers(spec: Mapping, input_shape: Sequence[int], seed: int | None):
    import keras

    unknown = sorted(set(spec) - set(KNOWN))
    if unknown:
        raise ValueError(f"unknown augmentation operations {unknown}; known: {list(KNOWN)}")
    h, w, _ = (int(v) for v in input_shape)
    layers = []
    if spec.get("flip"):
        layers.append(RandomHorizontalFlip(seed=seed))
    if spec.get("box_jitter"):
        j = dict(spec["box_jitter"])
        unknown = sorted(set(j) - {"scale", "shift", "fill", "p"})
        if unknown:
            raise ValueError(f"unknown box_jitter parameters {unknown}; known: fill, p, scale, shift")
        layers.append(RandomBoxJitter(scale=tuple(j.get("scale", (1.0, 1.0))), shift=float(j.get("shift", 0.0)),
                                      fill=j.get("fill", "reflect"), p=float(j.get("p", 1.0)), seed=seed))
    if spec.get("rotation"):
        layers.append(keras.layers.RandomRotation(float(spec["rotation"]) / 360.0, fill_mode="nearest", seed=seed))
    if spec.get("zoom"):
        z = float(spec["zoom"])
        layers.append(keras.layers.RandomZoom((-z, z), fill_mode="nearest", seed=seed))
    if spec.get("translate"):
        t = float(spec["translate"])
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="nearest", seed=seed))
    if spec.get("shear"):
        sx, sy = _shear_degrees(spec["shear"])
        layers.append(RandomAffineTV(shear=(sx, sy), fill="nearest", seed=seed, name="shear"))
    if spec.get("affine"):
        a = dict(spec["affine"])
        unknown = sorted(set(a) - {"degrees", "translate", "scale", "shear", "fill", "fill_value", "p"})
        if unknown:
            raise ValueError(f"unknown affine parameters {unknown}")
        sh = a.get("shear", 0.0)
        layers.append(RandomAffineTV(degrees=float(a.get("degrees", 0.0)), translate=a.get("translate", (0.0, 0.0)),
                                     scale=a.get("scale", (1.0, 1.0)),
                                     shear=_shear_degrees(sh) if sh else (0.0, 0.0),
                                     fill=a.get("fill", "constant"), fill_value=float(a.get("fill_value", 0.0)),
                                     p=float(a.get("p", 1.0)), seed=seed))
    if spec.get("crop_padding"):
        layers.append(RandomPadCrop(int(spec["crop_padding"]), seed=seed))
    groups = spec.get("random_apply")
    if groups:
        for g in ([groups] if isinstance(groups, Mapping) else list(groups)):
            if set(g) - {"p", "ops"} or "ops" not in g:
                raise ValueError(f"random_apply expects {{'p': probability, 'ops': {{...}}}}, got {g!r}")
            inner = _layers(g["ops"], input_shape, seed)
            if inner:
                layers.append(RandomApply(inner, p=float(g.get("p", 0.5)), seed=seed))
    if spec.get("contrast"):
        layers.append(keras.layers.RandomContrast(float(spec["contrast"]), value_range=(0, 255), seed=seed))
    if spec.get("brightness"):
        layers.append(keras.layers.RandomBrightness(float(spec["brightness"]), value_range=(0, 255), seed=seed))
    if spec.get("blur"):
        b = spec["blur"]
        b = {"p": 0.5, "sigma": (0.1, float(b))} if not isinstance(b, Mapping) else dict(b)
        unknown = sorted(set(b) - {"p", "sigma"})
        if unknown:
            raise ValueError(f"unknown blur parameters {unknown}; known: p, sigma")
        layers.append(RandomGaussianBlur(sigma=tuple(b.get("sigma", (0.1, 1.0))), p=float(b.get("p", 0.5)),
                                         seed=seed))
    if spec.get("gamma"):
        g = dict(spec["gamma"])
        unknown = sorted(set(g) - {"p", "range"})
        if unknown:
            raise ValueError(f"unknown gamma parameters {unknown}; known: p, range")
        layers.append(RandomGamma(gamma=tuple(g.get("range", (0.7, 1.4))), p=float(g.get("p", 0.5)), seed=seed))
    if spec.get("erasing"):
        layers.append(keras.layers.RandomErasing(factor=float(spec["erasing"]), value_range=(0, 255), seed=seed))
    if spec.get("random_erasing"):
        e = spec["random_erasing"]
        e = {} if e is True else dict(e)
        unknown = sorted(set(e) - {"p", "scale", "ratio", "value"})
        if unknown:
            raise ValueError(f"unknown random_erasing parameters {unknown}")
        layers.append(RandomErasingTV(p=float(e.get("p", 0.5)), scale=tuple(e.get("scale", (0.02, 0.33))),
                                      ratio=tuple(e.get("ratio", (0.3, 3.3))), value=e.get("value", 0.0), seed=seed))
    return layers


def _shear_degrees(value) -> tuple[float, float]:
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - {"degrees", "radians", "y"})
        if unknown or ("degrees" in value) == ("radians" in value):
            raise ValueError(f"shear expects a number (degrees), {{'degrees': a}} or {{'radians': r}}, got {value!r}")
        x = float(value["degrees"]) if "degrees" in value else math.degrees(float(value["radians"]))
        return x, float(value.get("y", 0.0))
    if isinstance(value, (list, tuple)):
        return float(value[0]), float(value[1])
    return float(value), 0.0


@keras.saving.register_keras_serializable(package="ferzoo")
class _RandomLayer(keras.layers.Layer):
    """What every random augmentation layer here shares: a seed and its generator, the identity outside
    training (and when :meth:`is_identity` says the settings do nothing), the input shape kept, and a config
    of the constructor arguments (:meth:`settings`) plus the seed. Subclasses implement :meth:`augment`."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def uniform(self, shape, lo=0.0, hi=1.0):
        return keras.random.uniform(shape, lo, hi, seed=self.seed_generator)

    def is_identity(self) -> bool:
        return False

    def call(self, images, training=True):
        if not training or self.is_identity():
            return images
        return self.augment(tf.convert_to_tensor(images))

    def augment(self, x):
        raise NotImplementedError

    def settings(self) -> dict:
        return {}

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.settings(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomAffineTV(_RandomLayer):
    """torchvision ``RandomAffine``: rotation, translation, scale and x/y shear about the image centre,
    one transform per image, applied with probability ``p``. Angles in degrees."""

    def __init__(self, degrees=0.0, translate=(0.0, 0.0), scale=(1.0, 1.0), shear=(0.0, 0.0), fill="constant",
                 fill_value=0.0, p=1.0, interpolation="bilinear", seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.degrees = float(degrees)
        translate = (float(translate), float(translate)) if np.isscalar(translate) else tuple(translate)
        self.translate = tuple(float(v) for v in translate)
        self.scale = tuple(float(v) for v in scale)
        self.shear = (float(shear), 0.0) if np.isscalar(shear) else tuple(float(v) for v in shear)
        self.fill, self.fill_value, self.p = fill, float(fill_value), float(p)
        self.interpolation = interpolation

    def augment(self, images):
        dtype = images.dtype if images.dtype.is_floating else tf.float32
        x = tf.cast(images, dtype)
        if self.p >= 1.0:
            return self._warp(x)
        # transform only the images drawn (probability p), leave the others untouched
        pick = self.uniform((tf.shape(x)[0],)) < self.p
        return _apply_to_subset(x, pick, self._warp)

    def _warp(self, x):
        dtype = x.dtype
        b = tf.shape(x)[0]
        hf, wf = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)

        def u(lo, hi):
            return self.uniform((b,), lo, hi)

        rad = math.pi / 180.0
        theta = u(-self.degrees, self.degrees) * rad
        tx = tf.round(u(-self.translate[0], self.translate[0]) * wf)
        ty = tf.round(u(-self.translate[1], self.translate[1]) * hf)
        s = u(self.scale[0], self.scale[1])
        shx = u(-self.shear[0], self.shear[0]) * rad
        shy = u(-self.shear[1], self.shear[1]) * rad
        cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
        zeros, ones = tf.zeros_like(s), tf.ones_like(s)

        def mat(a, b_, c, d, e, f):
            return tf.stack([tf.stack([a, b_, c], -1), tf.stack([d, e, f], -1),
                             tf.stack([zeros, zeros, ones], -1)], -2)

        cos, sin = tf.cos(theta), tf.sin(theta)
        # forward map (input -> output): T(c + t) R S Sh T(-c)
        fwd = (mat(ones, zeros, cx + tx, zeros, ones, cy + ty)
               @ mat(cos * s, -sin * s, zeros, sin * s, cos * s, zeros)
               @ mat(ones, tf.tan(shx), zeros, tf.tan(shy), ones, zeros)
               @ mat(ones, zeros, -cx * ones, zeros, ones, -cy * ones))
        inv = tf.linalg.inv(fwd)
        transform = tf.reshape(inv, (-1, 9))[:, :8] / inv[:, 2:3, 2]
        out = keras.ops.image.affine_transform(x, tf.cast(transform, dtype), interpolation=self.interpolation,
                                               fill_mode=self.fill, fill_value=self.fill_value)
        return tf.cast(out, dtype)

    def settings(self):
        return {"degrees": self.degrees, "translate": self.translate, "scale": self.scale, "shear": self.shear,
                "fill": self.fill, "fill_value": self.fill_value, "p": self.p, "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomErasingTV(_RandomLayer):
    """torchvision ``RandomErasing(p, scale, ratio, value)`` on a batch, each image independently."""

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, attempts=10, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not (0 < scale[0] <= scale[1] <= 1) or not (0 < ratio[0] <= ratio[1]):
            raise ValueError(f"random_erasing: need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1], "
                             f"got scale={scale}, ratio={ratio}")
        if not 0 <= p <= 1:
            raise ValueError(f"random_erasing: p must be in [0, 1], got {p}")
        self.p, self.scale, self.ratio = float(p), tuple(map(float, scale)), tuple(map(float, ratio))
        self.value = value if isinstance(value, str) else (
            [float(v) for v in value] if isinstance(value, (list, tuple)) else float(value))
        if isinstance(self.value, str) and self.value != "random":
            raise ValueError(f"random_erasing: value must be a number, a list or 'random', got {value!r}")
        self.attempts = int(attempts)

    def is_identity(self):
        return self.p == 0

    def augment(self, x):
        dtype = x.dtype
        b = tf.shape(x)[0]
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
        k, u = self.attempts, self.uniform
        target = u((b, k), self.scale[0], self.scale[1]) * hf * wf
        aspect = tf.exp(u((b, k), math.log(self.ratio[0]), math.log(self.ratio[1])))
        eh = tf.round(tf.sqrt(target * aspect))
        ew = tf.round(tf.sqrt(target / aspect))
        valid = (eh < hf) & (ew < wf)
        first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
        eh = tf.gather(eh, first, batch_dims=1)
        ew = tf.gather(ew, first, batch_dims=1)
        apply = tf.reduce_any(valid, axis=1) & (u((b,)) < self.p)
        top = tf.floor(u((b,)) * (hf - eh + 1.0))
        left = tf.floor(u((b,)) * (wf - ew + 1.0))
        rows = tf.cast(tf.range(h), tf.float32)[None, :]
        cols = tf.cast(tf.range(w), tf.float32)[None, :]
        in_r = (rows >= top[:, None]) & (rows < (top + eh)[:, None])
        in_c = (cols >= left[:, None]) & (cols < (left + ew)[:, None])
        mask = in_r[:, :, None] & in_c[:, None, :] & apply[:, None, None]
        if self.value == "random":
            fill = tf.cast(u(tf.shape(x), 0.0, 255.0), dtype)
        else:
            fill = tf.cast(tf.broadcast_to(tf.constant(self.value, tf.float32), [tf.shape(x)[-1]]), dtype)
        return tf.where(mask[..., None], fill, x)

    def settings(self):
        return {"p": self.p, "scale": self.scale, "ratio": self.ratio, "value": self.value,
                "attempts": self.attempts}


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomHorizontalFlip(_RandomLayer):
    """Mirror each image left-right with probability 0.5 (one select; cheaper than RandomFlip)."""

    def augment(self, x):
        flip = self.uniform((tf.shape(x)[0], 1, 1, 1)) < 0.5
        return tf.where(flip, tf.reverse(x, axis=[2]), x)


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomPadCrop(_RandomLayer):
    """Zero-pad by ``padding`` and crop back to size at a random offset, independently per image
    (= a random integer shift in [-padding, padding] with zero fill)."""

    def __init__(self, padding, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.padding = int(padding)

    def is_identity(self):
        return self.padding == 0

    def augment(self, x):
        dtype = x.dtype if x.dtype.is_floating else tf.float32
        b = tf.shape(x)[0]
        p = float(self.padding)
        shift = tf.floor(self.uniform((b, 2), -p, p + 1.0))
        zeros, ones = tf.zeros((b,)), tf.ones((b,))
        # output (x, y) reads input (x + dx, y + dy)
        transform = tf.stack([ones, zeros, shift[:, 0], zeros, ones, shift[:, 1], zeros, zeros], axis=1)
        out = keras.ops.image.affine_transform(tf.cast(x, dtype), tf.cast(transform, dtype),
                                               interpolation="nearest", fill_mode="constant", fill_value=0)
        return tf.cast(out, dtype)

    def settings(self):
        return {"padding": self.padding}


class RandomApply(_RandomLayer):
    """Apply a list of layers to each image of a batch with probability ``p`` (else leave it). Built by
    :func:`build_augmentation` from a recipe; not serialisable on its own (it holds other layers)."""

    def __init__(self, layers, p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.inner = list(layers)
        self.p = float(p)

    def augment(self, images):
        def run(x):
            for layer in self.inner:
                x = layer(x, training=True)
            return x

        pick = self.uniform((tf.shape(images)[0],)) < self.p
        return _apply_to_subset(images, pick, run)


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomBoxJitter(_RandomLayer):
    """The crop box of a face jittered as a detector's box varies: per image, the box's side is scaled by
    U(lo, hi) and its centre moved by U(-shift, shift) box sides in x and y; the uncovered border is
    filled by ``reflect`` or ``nearest``. Applied to each image with probability ``p``."""

    def __init__(self, scale=(1.0, 1.0), shift=0.0, fill="reflect", p=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        scale = tuple(float(v) for v in scale)
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"box_jitter: scale must be [lo, hi] with 0 < lo <= hi, got {list(scale)}")
        if not 0 <= float(shift) < 1:
            raise ValueError(f"box_jitter: shift must be a fraction in [0, 1), got {shift!r}")
        if fill not in ("reflect", "nearest"):
            raise ValueError(f"box_jitter: fill must be 'reflect' or 'nearest', got {fill!r}")
        if not 0 <= float(p) <= 1:
            raise ValueError(f"box_jitter: p must be in [0, 1], got {p!r}")
        self.scale, self.shift, self.fill, self.p = scale, float(shift), fill, float(p)

    def is_identity(self):
        return self.p == 0

    def augment(self, x):
        dtype = x.dtype if x.dtype.is_floating else tf.float32
        x = tf.cast(x, dtype)
        b = tf.shape(x)[0]
        hf, wf = tf.cast(tf.shape(x)[1], tf.float32), tf.cast(tf.shape(x)[2], tf.float32)

        def u(lo, hi):
            return self.uniform((b,), lo, hi)

        s = u(self.scale[0], self.scale[1])
        dx = u(-self.shift, self.shift) * wf
        dy = u(-self.shift, self.shift) * hf
        keep = u(0.0, 1.0) >= self.p  # images left as they are
        s = tf.where(keep, tf.ones_like(s), s)
        dx = tf.where(keep, tf.zeros_like(dx), dx)
        dy = tf.where(keep, tf.zeros_like(dy), dy)
        cx, cy = (wf - 1.0) / 2.0, (hf - 1.0) / 2.0
        zeros = tf.zeros_like(s)
        # output pixel (x, y) reads the input at centre + s * ((x, y) - centre) + (dx, dy)
        transform = tf.stack([s, zeros, cx * (1.0 - s) + dx, zeros, s, cy * (1.0 - s) + dy, zeros, zeros], 1)
        out = keras.ops.image.affine_transform(x, tf.cast(transform, dtype), interpolation="bilinear",
                                               fill_mode=self.fill)
        return tf.cast(out, dtype)

    def settings(self):
        return {"scale": self.scale, "shift": self.shift, "fill": self.fill, "p": self.p}


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomGaussianBlur(_RandomLayer):
    """Gaussian blur with sigma U(lo, hi) drawn per image, applied with probability ``p`` (the others get
    the identity kernel); separable, radius ceil(3 hi), symmetric padding at the edges."""

    def __init__(self, sigma=(0.1, 1.0), p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        sigma = tuple(float(v) for v in sigma)
        if len(sigma) != 2 or not 0 <= sigma[0] <= sigma[1]:
            raise ValueError(f"blur: sigma must be [lo, hi] with 0 <= lo <= hi, got {list(sigma)}")
        if not 0 <= float(p) <= 1:
            raise ValueError(f"blur: p must be in [0, 1], got {p!r}")
        self.sigma, self.p = sigma, float(p)
        self.radius = max(1, int(math.ceil(3.0 * sigma[1])))

    def is_identity(self):
        return self.p == 0 or self.sigma[1] == 0

    def augment(self, x):
        dtype = x.dtype if x.dtype.is_floating else tf.float32
        x = tf.cast(x, tf.float32)
        b = tf.shape(x)[0]
        r = self.radius
        sigma = self.uniform((b,), self.sigma[0], self.sigma[1])
        apply = self.uniform((b,)) < self.p
        sigma = tf.where(apply, tf.maximum(sigma, 1e-3), 1e-3 * tf.ones_like(sigma))
        taps = tf.range(-r, r + 1, dtype=tf.float32)
        kernel = tf.exp(-tf.square(taps)[None, :] / (2.0 * tf.square(sigma)[:, None]))
        kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)  # (B, 2r + 1)
        h, w = tf.shape(x)[1], tf.shape(x)[2]
        padded = tf.pad(x, [[0, 0], [r, r], [0, 0], [0, 0]], mode="SYMMETRIC")
        rows = tf.add_n([kernel[:, k, None, None, None] * padded[:, k:k + h] for k in range(2 * r + 1)])
        padded = tf.pad(rows, [[0, 0], [0, 0], [r, r], [0, 0]], mode="SYMMETRIC")
        out = tf.add_n([kernel[:, k, None, None, None] * padded[:, :, k:k + w] for k in range(2 * r + 1)])
        return tf.cast(out, dtype)

    def settings(self):
        return {"sigma": self.sigma, "p": self.p}


@keras.saving.register_keras_serializable(package="ferzoo")
class RandomGamma(_RandomLayer):
    """x -> 255 (x / 255) ** g per image, g log-uniform in ``gamma`` = (lo, hi), with probability ``p``."""

    def __init__(self, gamma=(0.7, 1.4), p=0.5, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        gamma = tuple(float(v) for v in gamma)
        if len(gamma) != 2 or not 0 < gamma[0] <= gamma[1]:
            raise ValueError(f"gamma: range must be [lo, hi] with 0 < lo <= hi, got {list(gamma)}")
        if not 0 <= float(p) <= 1:
            raise ValueError(f"gamma: p must be in [0, 1], got {p!r}")
        self.gamma, self.p = gamma, float(p)

    def is_identity(self):
        return self.p == 0

    def augment(self, x):
        dtype = x.dtype if x.dtype.is_floating else tf.float32
        x = tf.cast(x, tf.float32)
        b = tf.shape(x)[0]
        g = tf.exp(self.uniform((b,), math.log(self.gamma[0]), math.log(self.gamma[1])))
        apply = self.uniform((b,)) < self.p
        g = tf.where(apply, g, tf.ones_like(g))[:, None, None, None]
        out = 255.0 * tf.pow(tf.clip_by_value(x / 255.0, 0.0, 1.0), g)
        return tf.cast(out, dtype)

    def settings(self):
        return {"gamma": self.gamma, "p": self.p}


def _apply_to_subset(x, pick, fn):
    """``fn`` applied only to the images where ``pick`` is true (the work scales with the number drawn)."""
    idx = tf.where(pick)

    def some():
        out = tf.cast(fn(tf.gather_nd(x, idx)), x.dtype)
        return tf.tensor_scatter_nd_update(x, idx, out)

    return tf.cond(tf.size(idx) > 0, some, lambda: tf.identity(x))


def apply_sampler(ds: tf.data.Dataset, sampler, seed: int = 0) -> tf.data.Dataset:
    """Rebalance an unbatched (image, label) data set, streaming (nothing is held in memory).

    ``{"oversample": r}``: keep every example once and add randomly drawn repeats (with replacement) of each
    class c until N_c >= r * N_max. ``"balanced"``: per epoch, N draws where every class is equally likely
    (the expectation of sampling with weight 1 / count(label)), as DAN's ImbalancedDatasetSampler.

    A data set straight from a ferzoo reader carries its labels and decoding ``source``: the draws are then
    made on example indices and only the drawn images are decoded (a fresh draw every epoch). Any other data
    set is scanned once for its labels and resampled by filtering.
    """
    from . import class_names_of, with_class_names

    names = class_names_of(ds)
    source = getattr(ds, "source", None)
    if source is not None and getattr(source, "labels", None) is not None:
        out = source.dataset(indices=_sample_indices(np.asarray(source.labels), sampler, seed))
        return with_class_names(out, names) if names else out
    counts = np.bincount(np.fromiter(ds.map(lambda x, y: y).as_numpy_iterator(), dtype=np.int64),
                         minlength=len(names) if names else 0)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("cannot resample an empty data set")

    def of_class(c):
        return ds.filter(lambda x, y: tf.equal(tf.cast(y, tf.int64), c))

    if isinstance(sampler, Mapping) and "oversample" in sampler:
        target = int(np.ceil(float(sampler["oversample"]) * counts.max()))
        out = ds
        for c, n in enumerate(counts):
            if 0 < n < target:
                extra = of_class(c).shuffle(int(n), seed=seed + c, reshuffle_each_iteration=True).repeat()
                out = out.concatenate(extra.take(target - int(n)))
    elif sampler == "balanced":
        present = [c for c, n in enumerate(counts) if n > 0]
        streams = [of_class(c).shuffle(int(counts[c]), seed=seed + c).repeat() for c in present]
        out = tf.data.Dataset.sample_from_datasets(streams, weights=[1.0 / len(present)] * len(present),
                                                   seed=seed).take(total)
    else:
        raise ValueError(f"unknown sampler {sampler!r}; use {{'oversample': ratio}} or 'balanced'")
    return with_class_names(out, names) if names else out


_MASK63 = tf.constant(0x7FFFFFFFFFFFFFFF, tf.int64)


def _random_stream(seed: int) -> tf.data.Dataset:
    """Non-negative int64s, a different stream every epoch (iteration), reproducible by ``seed``."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).map(
        lambda r: tf.bitwise.bitwise_and(r, _MASK63))


def _sample_indices(labels: np.ndarray, sampler, seed: int) -> tf.data.Dataset:
    """A stream of example indices (int64) realising ``sampler`` on ``labels`` (one epoch per iteration)."""
    labels = labels.astype(np.int64)
    total = len(labels)
    if total == 0:
        raise ValueError("cannot resample an empty data set")
    counts = np.bincount(labels)
    by_class = [np.flatnonzero(labels == c) for c in range(len(counts))]
    if isinstance(sampler, Mapping) and "oversample" in sampler:
        target = int(np.ceil(float(sampler["oversample"]) * counts.max()))
        out = tf.data.Dataset.range(total)
        for c, n in enumerate(counts):
            if 0 < n < target:
                members = tf.constant(by_class[c], tf.int64)
                extra = _random_stream(seed + 7919 * (c + 1)).take(target - int(n)).map(
                    lambda r, m=members, k=int(n): tf.gather(m, r % k))
                out = out.concatenate(extra)
        return out
    if sampler == "balanced":
        present = [c for c in range(len(counts)) if counts[c] > 0]
        flat = tf.constant(np.concatenate([by_class[c] for c in present]), tf.int64)
        start = tf.constant(np.cumsum([0] + [int(counts[c]) for c in present])[:-1], tf.int64)
        size = tf.constant([int(counts[c]) for c in present], tf.int64)
        k = len(present)

        def draw(r):
            c = r % k
            return tf.gather(flat, tf.gather(start, c) + (r // k) % tf.gather(size, c))

        return _random_stream(seed).take(total).map(draw)
    raise ValueError(f"unknown sampler {sampler!r}; use {{'oversample': ratio}} or 'balanced'")
