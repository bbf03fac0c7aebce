"""Pretrained backbone files (MS-Celeb or ImageNet ResNet-18 converted from PyTorch), shared by DAN and FDRL.

A backbone file initialises a model that is then trained; it is not a FER model, so it lives in its own store,
``$FERZOO_HOME/backbones/<backbone>/<tag>/<backbone>.weights.h5`` + card, and ``ferzoo weights`` lists it.
Models take it through the init-only config key ``backbone_weights`` (a tag of this store or a path): the key
is listed in ``ModelSpec.init_config``, so it never reaches a weights card, and a trained model loads without
the backbone file.

Convert a checkpoint with ``ferzoo convert resnet18 resnet18_msceleb.pth --tag msceleb`` (torchvision layout:
``conv1``, ``bn1``, ``layer1..4``; ``fc`` is dropped). Reading ``.pth`` needs PyTorch (``ferzoo[torch]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

BACKBONES = ("resnet18",)


def backbone_dir(backbone: str, tag: str) -> Path:
    from ..weights import home

    return home() / "backbones" / backbone / tag


def list_backbones() -> list[tuple[str, str, Path]]:
    """``(backbone, tag, weights path)`` of every converted backbone in the store."""
    from ..weights import WEIGHTS_SUFFIX, home

    root = home() / "backbones"
    out = []
    for name in BACKBONES:
        for d in sorted((root / name).glob("*")) if (root / name).is_dir() else []:
            path = d / f"{name}{WEIGHTS_SUFFIX}"
            if path.is_file():
                out.append((name, d.name, path))
    return out


def save_resnet18(state: Mapping, *, tag: str | None = None, output=None, source: str = "checkpoint",
                  converter: str = "ferzoo.backbones.pretrained") -> Path:
    """Port a torchvision ResNet-18 state dict (``{key: array}``) and write ``resnet18.weights.h5`` + card
    atomically into ``output`` or the backbone store under ``tag``. Returns the weights path."""
    from .. import weights as W
    from .resnet import resnet18
    from .torch_port import port_layers, resnet18_pairs

    if not tag and output is None:
        raise ValueError("resnet18 backbone: give a tag (store name) or an output folder")
    model = resnet18(input_shape=(224, 224, 3))
    port_layers(resnet18_pairs(model), state, source=source, ignore_prefixes=("fc.",))
    out_dir = Path(output) if output is not None else backbone_dir("resnet18", tag)
    path = out_dir / f"resnet18{W.WEIGHTS_SUFFIX}"
    provenance = {"converted_from": Path(source).name, "converter": converter, "tag": tag}
    if Path(source).is_file():
        provenance["source_sha256"] = W.sha256_of(source)
    W.save_weights_and_card(model, path, {"model": "resnet18_backbone", **provenance,
                                          "note": "torchvision ResNet-18 without fc: initialises the backbone of "
                                                  "a model built with backbone_weights=<tag or path>"})
    return path


def convert_resnet18(checkpoint, tag: str | None = None, output=None, **options) -> Path:
    """``ferzoo convert resnet18 CHECKPOINT --tag T``: a ``.pth`` file -> the backbone store."""
    from .torch_port import read_checkpoint

    if options:
        raise ValueError(f"resnet18 converter: unknown options {sorted(options)}")
    return save_resnet18(read_checkpoint(checkpoint), tag=tag, output=output, source=str(checkpoint))


def resolve_backbone(source, backbone: str = "resnet18", model: str = "?") -> Path:
    """A path, or a tag of the backbone store, -> the verified weights file (errors say how to make one)."""
    from ..weights import WEIGHTS_SUFFIX

    p = Path(str(source))
    if not p.is_file() and not str(source).endswith(WEIGHTS_SUFFIX) and "/" not in str(source):
        p = backbone_dir(backbone, str(source)) / f"{backbone}{WEIGHTS_SUFFIX}"
    if not p.is_file():
        known = [t for b, t, _ in list_backbones() if b == backbone]
        raise FileNotFoundError(
            f"{model}: backbone_weights {str(source)!r}: no file {p}; converted {backbone} backbones: {known or 'none'} "
            f"(convert a checkpoint with `ferzoo convert {backbone} resnet18_msceleb.pth --tag msceleb`)")
    return p


def load_resnet18_into(features, source, model: str = "?") -> Path:
    """Copy a converted ResNet-18 into the backbone layers that produced the tensor ``features`` (built by
    :func:`ferzoo.backbones.resnet.resnet18_features`, any prefix-free naming). Returns the file used."""
    from .resnet import resnet18

    path = resolve_backbone(source, "resnet18", model)
    donor = resnet18(input_shape=(64, 64, 3))
    try:
        donor.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - h5py/keras raise several types
        raise ValueError(f"{model}: backbone_weights {path}: not a ResNet-18 weights file "
                         f"({type(exc).__name__}: {exc})") from None
    targets = layers_behind(features)
    for layer in donor.layers:
        if not layer.weights:
            continue
        if layer.name not in targets:
            raise ValueError(f"{model}: backbone layer {layer.name!r} from {path} has no counterpart in the model")
        targets[layer.name].set_weights(layer.get_weights())
    return path


def layers_behind(tensor) -> dict:
    """The layers with weights (by name) that produced a symbolic Keras ``tensor``, found by walking the graph."""
    found, stack, seen = {}, [tensor], set()
    while stack:
        t = stack.pop()
        history = getattr(t, "_keras_history", None)
        if history is None:
            continue
        layer = history.operation
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if layer.weights:
            found[layer.name] = layer
        node = layer._inbound_nodes[history.node_index]
        stack.extend(node.input_tensors)
    return found
