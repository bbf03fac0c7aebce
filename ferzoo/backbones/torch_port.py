"""Copy PyTorch ``state_dict`` tensors into Keras layers (conv, dense, batch norm), with checked shapes.

A state dict here is a plain ``{key: numpy array}`` (convert torch tensors with ``.numpy()`` first, see
:func:`to_numpy_state`). Layouts: PyTorch ``Conv2d.weight`` is (out, in, kh, kw) -> Keras (kh, kw, in, out);
``Linear.weight`` is (out, in) -> Keras (in, out); ``BatchNorm`` ``weight, bias, running_mean, running_var`` ->
``gamma, beta, moving_mean, moving_variance`` (``num_batches_tracked`` has no Keras counterpart). Every error
names the checkpoint key and both shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

KINDS = ("conv", "dense", "bn")


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model: a missing, misshaped or unexpected key."""


def to_numpy_state(state: Mapping) -> dict[str, np.ndarray]:
    """torch tensors (or arrays) -> float32/int numpy arrays, keys unchanged."""
    out = {}
    for key, value in state.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        out[str(key)] = np.asarray(value)
    return out


def read_checkpoint(path) -> dict[str, np.ndarray]:
    """A ``.pth`` file -> flat ``{key: numpy array}`` of the weights it holds (``module.`` prefixes removed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        import torch
    except ImportError:
        raise ImportError(f"reading the PyTorch checkpoint {path} needs PyTorch: pip install 'ferzoo[torch]' "
                          "(or pip install torch)") from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
    return extract_state(obj, str(path))


def extract_state(obj, source: str = "checkpoint") -> dict[str, np.ndarray]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict, got {type(obj).__name__}")
    for key in ("model_state_dict", "state_dict"):
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    state = to_numpy_state({k: v for k, v in obj.items() if hasattr(v, "shape")})
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    if not state:
        raise CheckpointError(f"{source}: no tensors found (keys: {sorted(obj)[:8]})")
    return state


def _take(state: Mapping[str, np.ndarray], key: str, expected: tuple, source: str) -> np.ndarray:
    if key not in state:
        raise CheckpointError(f"{source}: missing key {key!r} (expected shape {expected})")
    value = np.asarray(state[key])
    if tuple(value.shape) != tuple(expected):
        raise CheckpointError(f"{source}: key {key!r} has shape {tuple(value.shape)}, expected {tuple(expected)}")
    if not np.all(np.isfinite(value)):
        raise CheckpointError(f"{source}: key {key!r} holds non-finite values")
    return value.astype(np.float32)


def port_layer(layer, kind: str, module: str, state: Mapping[str, np.ndarray], used: set | None = None,
               source: str = "checkpoint") -> None:
    """Assign the PyTorch module ``module``'s tensors in ``state`` to the built Keras ``layer``."""
    if kind not in KINDS:
        raise ValueError(f"unknown layer kind {kind!r}; use one of {KINDS}")
    if not layer.built:
        raise ValueError(f"layer {layer.name!r} is not built; call the model once before porting weights")
    keys = []
    if kind == "conv":
        kh, kw, cin, cout = (int(v) for v in layer.kernel.shape)
        keys.append(f"{module}.weight")
        layer.kernel.assign(_take(state, keys[-1], (cout, cin, kh, kw), source).transpose(2, 3, 1, 0))
        if layer.use_bias:
            keys.append(f"{module}.bias")
            layer.bias.assign(_take(state, keys[-1], (cout,), source))
    elif kind == "dense":
        cin, cout = (int(v) for v in layer.kernel.shape)
        keys.append(f"{module}.weight")
        layer.kernel.assign(_take(state, keys[-1], (cout, cin), source).T)
        if layer.use_bias:
            keys.append(f"{module}.bias")
            layer.bias.assign(_take(state, keys[-1], (cout,), source))
    else:
        n = (int(layer.moving_mean.shape[0]),)
        pairs = [("weight", layer.gamma), ("bias", layer.beta), ("running_mean", layer.moving_mean),
                 ("running_var", layer.moving_variance)]
        for suffix, var in pairs:
            if var is None:
                raise ValueError(f"layer {layer.name!r}: batch norm without scale/center cannot take {module}.{suffix}")
            keys.append(f"{module}.{suffix}")
            var.assign(_take(state, keys[-1], n, source))
        keys.append(f"{module}.num_batches_tracked")
    if used is not None:
        used.update(keys)


def port_layers(pairs: Iterable[tuple[object, str, str]], state: Mapping[str, np.ndarray], *,
                source: str = "checkpoint", ignore_prefixes: Iterable[str] = (), strict: bool = True) -> set:
    """Port every ``(keras_layer, torch_module, kind)``; with ``strict`` an unused checkpoint key (other than
    ``num_batches_tracked`` and ``ignore_prefixes``) is an error naming it. Returns the keys used."""
    used: set = set()
    for layer, module, kind in pairs:
        port_layer(layer, kind, module, state, used, source)
    if strict:
        ignore = tuple(ignore_prefixes)
        extra = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                       and not (ignore and k.startswith(ignore)))
        if extra:
            more = f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""
            raise CheckpointError(f"{source}: unexpected keys {extra[:5]}{more}; the model has no layer for them")
    return used


def resnet18_pairs(model, torch_prefix: str = "", keras_prefix: str = "", stage_names=None):
    """``(layer, module, kind)`` triples for the ResNet-18 layers of ``model`` (see
    :func:`ferzoo.backbones.resnet.torchvision_layer_map`)."""
    from .resnet import torchvision_layer_map

    mapping = torchvision_layer_map(torch_prefix, keras_prefix, stage_names)
    return [(model.get_layer(name), module, kind) for name, (module, kind) in mapping.items()]
