"""The paper's visualisations (spec 7) as heat maps over the face: the non-local patch weights w^g drawn on the
patch grid (Figs. 3 and 10, the default explainer) and the local-attention weights w^l (Fig. 13).

Both are class-agnostic (``class_index`` is accepted and ignored). ``mode`` says how the M values become a map:

* ``"cells"`` (default): the image is cut into the n x n grid of drawing cells whose edges lie halfway between
  neighbouring patch centres (for 144 px and 16 patches: 0-40-72-104-144), and each cell shows its patch's
  weight; this is the 4 x 4 matrix of Fig. 10 laid over the face;
* ``"overlap"``: every pixel shows the mean weight of the patches that cover it (the overlaps blend).

``normalize``: ``"max"`` (default) divides by the image's largest weight, so ratios are kept and the most
weighted patch is 1 (uniform weights, e.g. Model-S, give a flat map of ones); ``"minmax"`` stretches to [0, 1];
``"none"`` returns the weights themselves (w^g sums to 1 over the patches, so the values are small).
"""

from __future__ import annotations

import numpy as np

from .geometry import PatchGrid

MODES = ("cells", "overlap")
NORMALIZE = ("max", "minmax", "none")


def attention_weights(model, images, key: str = "patch_weights", batch_size: int = 32) -> np.ndarray:
    """``(B, M)`` values of the output ``key`` (``patch_weights`` = w^g, ``local_weights`` = w^l) for a batch of
    model inputs (raw 0..255 pixels of the input shape)."""
    import keras

    if key not in model._outputs_struct:  # noqa: SLF001 - the functional model's output dict
        raise ValueError(f"model {model.model_name!r} has no output {key!r}")
    images = np.asarray(images, np.float32)
    out = [keras.ops.convert_to_numpy(model(images[i:i + batch_size], training=False)[key])
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32)


def weight_grid(model, images, key: str = "patch_weights") -> np.ndarray:
    """``(B, n, n)``: the weights reshaped row-major onto the patch grid (Fig. 10's 4 x 4 matrices)."""
    from .model import model_grid

    grid = model_grid(model)
    return attention_weights(model, images, key).reshape(-1, grid.n, grid.n)


def draw_on_grid(weights, grid: PatchGrid, mode: str = "cells") -> np.ndarray:
    """``(B, M)`` patch values -> ``(B, H, W)`` maps at input resolution (see the module doc for ``mode``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    weights = np.asarray(weights, np.float32)
    if weights.ndim != 2 or weights.shape[1] != grid.num_patches:
        raise ValueError(f"expected weights of shape (B, {grid.num_patches}), got {weights.shape}")
    h, w = grid.side
    maps = np.zeros((weights.shape[0], h, w), np.float32)
    if mode == "cells":
        rows, cols = grid.cell_edges(0), grid.cell_edges(1)
        for k in range(grid.num_patches):
            r, c = divmod(k, grid.n)
            maps[:, rows[r]:rows[r + 1], cols[c]:cols[c + 1]] = weights[:, k, None, None]
        return maps
    count = np.zeros((h, w), np.float32)
    for k, (y0, x0, y1, x1) in enumerate(grid.boxes()):
        maps[:, y0:y1, x0:x1] += weights[:, k, None, None]
        count[y0:y1, x0:x1] += 1.0
    return maps / count


def normalise(maps, how: str = "max") -> np.ndarray:
    if how not in NORMALIZE:
        raise ValueError(f"normalize must be one of {list(NORMALIZE)}, got {how!r}")
    maps = np.asarray(maps, np.float32)
    if how == "none":
        return maps
    flat = maps.reshape(len(maps), -1)
    hi = flat.max(axis=1)[:, None, None]
    if how == "max":
        return np.divide(maps, hi, out=np.zeros_like(maps), where=hi > 0)
    lo = flat.min(axis=1)[:, None, None]
    span = hi - lo
    return np.divide(maps - lo, span, out=np.zeros_like(maps), where=span > 1e-12)


def _explain(model, images, key: str, mode: str, normalize: str, batch_size: int) -> np.ndarray:
    from .model import model_grid

    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {list(NORMALIZE)}, got {normalize!r}")
    return normalise(draw_on_grid(attention_weights(model, images, key, batch_size), model_grid(model), mode),
                     normalize)


def patch_weights_explainer(model, images, class_index=None, mode: str = "cells", normalize: str = "max",
                            batch_size: int = 32, **_):
    """``model.explain(images)``: the non-local weights w^g over the face grid, ``(B, H, W)`` in [0, 1]."""
    return _explain(model, images, "patch_weights", mode, normalize, batch_size)


def local_weights_explainer(model, images, class_index=None, mode: str = "cells", normalize: str = "max",
                            batch_size: int = 32, **_):
    """``model.explain(images, method="local_weights")``: the local-attention weights w^l over the face grid."""
    return _explain(model, images, "local_weights", mode, normalize, batch_size)
