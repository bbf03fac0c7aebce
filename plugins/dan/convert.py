"""Convert the official DAN PyTorch checkpoints (and the MS-Celeb ResNet-18 backbone) into ferzoo weights.

``ferzoo convert dan CHECKPOINT.pth --tag NAME [--config dataset=rafdb]`` calls :func:`convert`.

* A DAN checkpoint (``{"iter", "model_state_dict", "optimizer_state_dict"}`` or a bare state dict with
  ``features.0.weight``) becomes ``dan.weights.h5`` + card in the local store (``store_dir("dan", tag)``) or in
  ``output``; ``ferzoo.load("dan", weights=tag)`` then loads it. The number of classes and heads is read from
  the checkpoint (``fc.weight``, ``cat_head{j}``).
* The MS-Celeb backbone (``{"state_dict": torchvision resnet18}``) is handed to the core's
  :func:`ferzoo.backbones.pretrained.save_resnet18` (the backbone store, shared with FDRL); train from it with
  ``--config backbone_weights=TAG`` (or a path). ``fc`` (1000 identities) is dropped.

Reading ``.pth`` needs PyTorch (``pip install ferzoo[torch]``); it is loaded with ``weights_only=True``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ferzoo.backbones.torch_port import CheckpointError, port_layers, read_checkpoint, resnet18_pairs
from ferzoo.labels import NATIVE

#: official ``features.N`` indices of ``list(resnet18.children())[:-2]``
DAN_STAGE_NAMES = {"conv1": "0", "bn1": "1", "layer1": "4", "layer2": "5", "layer3": "6", "layer4": "7"}
#: class order of the released models (spec section 10), as canonical names
CLASS_ORDERS = {
    "rafdb": list(NATIVE["rafdb"]),
    "affectnet8": list(NATIVE["affectnet"]),
    "affectnet7": list(NATIVE["affectnet"][:7]),
    "sfew": list(NATIVE["sfew"]),
}


def checkpoint_kind(state: Mapping[str, np.ndarray], source: str = "checkpoint") -> str:
    if "features.0.weight" in state or any(k.startswith("cat_head") for k in state):
        return "dan"
    if "conv1.weight" in state and any(k.startswith("layer4.") for k in state):
        return "resnet18"
    raise CheckpointError(f"{source}: neither a DAN state dict (features.0.weight, cat_head0.*) nor a torchvision "
                          f"ResNet-18 (conv1.weight, layer4.*); first keys: {sorted(state)[:6]}")


def dan_pairs(model, num_heads: int, final_batchnorm: bool = True):
    """``(keras layer, official module, kind)`` for every DAN layer with weights."""
    pairs = resnet18_pairs(model, torch_prefix="features.", stage_names=DAN_STAGE_NAMES)
    for j in range(num_heads):
        sa, ca = model.get_layer(f"cat_head{j}_sa"), model.get_layer(f"cat_head{j}_ca")
        base = f"cat_head{j}"
        pairs.append((sa.sublayer("conv1x1"), f"{base}.sa.conv1x1.0", "conv"))
        pairs.append((sa.sublayer("conv1x1_bn"), f"{base}.sa.conv1x1.1", "bn"))
        for key in ("3x3", "1x3", "3x1"):
            pairs.append((sa.sublayer(f"conv_{key}"), f"{base}.sa.conv_{key}.0", "conv"))
            pairs.append((sa.sublayer(f"conv_{key}_bn"), f"{base}.sa.conv_{key}.1", "bn"))
        pairs.append((ca.attention_0, f"{base}.ca.attention.0", "dense"))
        pairs.append((ca.attention_1, f"{base}.ca.attention.1", "bn"))
        pairs.append((ca.attention_3, f"{base}.ca.attention.3", "dense"))
    pairs.append((model.get_layer("fc"), "fc", "dense"))
    if final_batchnorm:
        pairs.append((model.get_layer("bn"), "bn", "bn"))
    return pairs


def _class_names(num_classes: int, class_names, dataset, source: str) -> list[str]:
    if class_names is not None:
        names = [c.strip() for c in class_names.split(",")] if isinstance(class_names, str) else list(class_names)
        if len(names) != num_classes:
            raise ValueError(f"{source}: {len(names)} class names given for a {num_classes}-class checkpoint")
        return names
    if dataset is None:  # the released files' names: affecnet8_*, affecnet7_*, rafdb_*
        lowered = Path(source).name.lower()
        dataset = ("affectnet8" if num_classes == 8 else "affectnet7") if "affec" in lowered else None
        dataset = dataset or ("affectnet8" if num_classes == 8 else "rafdb")
    if dataset not in CLASS_ORDERS:
        raise ValueError(f"{source}: unknown dataset {dataset!r} for the class order; known: {sorted(CLASS_ORDERS)}")
    names = CLASS_ORDERS[dataset]
    if len(names) != num_classes:
        raise ValueError(f"{source}: dataset {dataset!r} has {len(names)} classes but the checkpoint has {num_classes}")
    return list(names)


def convert_dan_state(state: Mapping[str, np.ndarray], *, class_names: Sequence[str] | None = None,
                      dataset: str | None = None, input_shape=(224, 224, 3), source: str = "checkpoint"):
    """Official DAN state dict -> a ferzoo ``dan`` model holding those weights."""
    import ferzoo

    if "fc.weight" not in state:
        raise CheckpointError(f"{source}: missing key 'fc.weight' (the classifier; expected shape (C, 512))")
    num_classes = int(np.asarray(state["fc.weight"]).shape[0])
    heads = sorted({int(m.group(1)) for k in state for m in [re.match(r"cat_head(\d+)\.", k)] if m})
    if not heads:
        raise CheckpointError(f"{source}: missing key 'cat_head0.sa.conv1x1.0.weight' (no attention heads found)")
    if heads != list(range(len(heads))):
        raise CheckpointError(f"{source}: attention heads {heads} are not numbered 0..K-1")
    final_bn = "bn.weight" in state
    names = _class_names(num_classes, class_names, dataset, source)
    model = ferzoo.build("dan", num_classes=num_classes, input_shape=tuple(input_shape), class_names=names,
                         num_heads=len(heads), final_batchnorm=final_bn)
    port_layers(dan_pairs(model, len(heads), final_bn), state, source=source)
    return model


def convert(checkpoint, tag: str | None = None, output=None, *, class_names=None, dataset: str | None = None,
            input_shape=(224, 224, 3), **options) -> Path:
    """Convert ``checkpoint`` (official DAN or MS-Celeb ResNet-18 ``.pth``) and write weights + card.

    Writes to ``output`` (a folder) if given, else to the local store ``store_dir("dan", tag)``. Returns the
    weights path. ``dataset`` (rafdb, affectnet7, affectnet8, sfew) or ``class_names`` set the output class
    order; by default it is read from the file name of the released checkpoints.
    """
    from ferzoo import weights as weights_mod

    if options:
        raise ValueError(f"dan converter: unknown options {sorted(options)}; known: class_names, dataset, input_shape")
    if not tag and output is None:
        raise ValueError("dan converter: give a tag (store name) or an output folder")
    source = str(checkpoint)
    state = read_checkpoint(checkpoint)
    kind = checkpoint_kind(state, source)
    provenance = {"converted_from": Path(source).name, "source_sha256": weights_mod.sha256_of(source),
                  "converter": "ferzoo_plugins.dan.convert", "tag": tag}
    if kind == "dan":
        model = convert_dan_state(state, class_names=class_names, dataset=dataset, input_shape=input_shape,
                                  source=source)
        out_dir = Path(output) if output is not None else weights_mod.store_dir("dan", tag)
        return weights_mod.save(model, out_dir / f"dan{weights_mod.WEIGHTS_SUFFIX}", **provenance,
                                note="official DAN release converted from PyTorch; affinity centres are not in "
                                     "the release and stay at their random init")
    from ferzoo.backbones.pretrained import save_resnet18

    return save_resnet18(state, tag=tag, output=output, source=source, converter="ferzoo_plugins.dan.convert")
