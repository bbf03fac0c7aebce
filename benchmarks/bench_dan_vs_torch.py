"""ferzoo's DAN (or Deep-Emotion, or FDRL) against the same network in PyTorch on this CPU, side by side in one
interleaved run.

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/bench_dan_vs_torch.py [--model dan|deep_emotion|fdrl] [--rounds 3]
        [--size 224] [--matmul 4096] [--json out.json]

``--model deep_emotion`` (default size 48, one channel) compares ferzoo's Deep-Emotion with the PyTorch
statement in ``tests/plugins/deep_emotion/deep_emotion_torch_reference.py`` (the same logits on copied weights,
tested), trained with Adam (lr 0.005, the paper's) on cross-entropy + L2 0.001 on fc1 and fc2 (the default
recipe's). ``--model fdrl`` (default size 224) compares ferzoo's FDRL with
``tests/plugins/fdrl/fdrl_torch_reference.py`` (ResNet-18 + FDN + FRN + EPN, the same outputs on copied weights,
tested), trained with Adam (lr 1e-4, betas 0.5 and 0.999) on cross-entropy + the compactness, balance and
distribution losses with rule-updated centres (the paper's recipe and lambdas). Everything below is said of DAN,
the default.

The PyTorch side is the reference model of the tests (``tests/plugins/dan/dan_torch_reference.py``: the
official layout, torchvision's ResNet-18 + 4 attention heads), trained with SGD (lr 0.1, momentum 0.9, weight
decay 1e-4) on cross-entropy + an affinity term (squared distance of the pooled features to their class
centre over the centres' variance) + the partition term (log(1 + heads / variance of the heads)), the paper's
losses. ferzoo's side is ``ferzoo.build("dan")`` with ``compile()`` (the same recipe and losses). Both use 2
threads (``torch.set_num_threads(2)``; TensorFlow's default on 2 cores), random weights and pixels.

Each side lives in its own worker process (TensorFlow and PyTorch never share a process or run at the same
time); each round measures, one after the other: batch-1 latency (median of ``--b1`` calls), batch-64 inference
throughput, and training throughput at batch 32 (``--train-steps`` steps), for ferzoo in float32, ferzoo in
mixed bfloat16, PyTorch in float32 and PyTorch with CPU bfloat16 autocast, plus two inference paths of ferzoo on
the same weights (no training rows): ``frozen`` (``ferzoo.export.frozen_predictor``: the weights folded into the
graph as constants) and ``xla`` (the forward pass under ``tf.function(jit_compile=True)``); the medians over ``--rounds``
rounds are reported with the ratios to PyTorch float32 (ferzoo / PyTorch: > 1 is faster for throughput,
< 1 is faster for latency).

A roofline table follows: each round also times a ``--matmul``-square matrix product per framework and dtype
(the arithmetic peak a convolution network can approach on this CPU), and each side's batch-1 latency,
batch-64 throughput and training throughput are given as a share of that peak, counting DAN's forward FLOPs
(TensorFlow's graph profiler) and three times them for a training step (forward, and backward to inputs and to
weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from timing import median_seconds

REPO = Path(__file__).resolve().parents[1]


def torch_side(size: int, classes: int, model_name: str = "dan") -> dict:
    """The PyTorch network of ``model_name`` (the tests' statement of it), its optimizer and training loss:
    ``{"b1", "b64", "train"}`` -> a function of ``bf16`` (CPU bfloat16 autocast or not)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    sys.path.insert(0, str(REPO / "tests" / "plugins" / model_name))
    if model_name == "deep_emotion":
        from deep_emotion_torch_reference import TorchDeepEmotion

        model = TorchDeepEmotion(classes)
        opt = torch.optim.Adam(model.parameters(), lr=0.005, betas=(0.9, 0.999))

        def loss_of(x, y):
            l2 = model.fc1.weight.square().sum() + model.fc2.weight.square().sum()
            return nn.functional.cross_entropy(model(x), y) + 0.001 * l2

        return _torch_steps(model, opt, loss_of, lambda out: out, 1, size, classes)
    if model_name == "fdrl":
        from fdrl_torch_reference import FDRLLosses, TorchFDRL

        model, losses = TorchFDRL(classes), FDRLLosses(classes)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
        return _torch_steps(model, opt, lambda x, y: losses(model(x), y), lambda out: out[0], 3, size, classes)
    from dan_torch_reference import TorchDAN

    model = TorchDAN(classes)
    centres = nn.Parameter(torch.randn(classes, 512))
    opt = torch.optim.SGD(list(model.parameters()) + [centres], lr=0.1, momentum=0.9, weight_decay=1e-4)

    def losses(x, y):
        logits, feats, heads = model(x)
        pooled = feats.mean(dim=(2, 3))
        affinity = ((pooled - centres[y]) ** 2).sum(1).mean() / centres.var(dim=0).sum()
        partition = torch.log(1 + heads.shape[1] / (heads.var(dim=1).mean() + 1e-8))
        return nn.functional.cross_entropy(logits, y) + affinity + partition

    return _torch_steps(model, opt, losses, lambda out: out[0], 3, size, classes)


def _torch_steps(model, opt, loss_of, logits_of, channels: int, size: int, classes: int) -> dict:
    import torch

    def train_step(x, y, bf16: bool):
        model.train()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(x, y)
        loss.backward()
        opt.step()

    def infer(x, bf16: bool):
        model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return logits_of(model(x))

    g = torch.Generator().manual_seed(0)
    data = {b: torch.rand(b, channels, size, size, generator=g) for b in (1, 32, 64)}
    y32 = torch.randint(0, classes, (32,), generator=g)
    return {"b1": lambda bf16: infer(data[1], bf16), "b64": lambda bf16: infer(data[64], bf16),
            "train": lambda bf16: train_step(data[32], y32, bf16)}


#: the models with a PyTorch statement in the tests, and their names in the printed tables
LABELS = {"dan": "DAN", "deep_emotion": "Deep-Emotion", "fdrl": "FDRL"}


def _input_shape(model_name: str, size: int) -> tuple:
    """``(size, size, C)``, C from the model's paper input shape."""
    import ferzoo

    return (size, size, ferzoo.model_info(model_name).default_input_shape[-1])


def _build(model_name: str, size: int, classes: int):
    """The model with random weights: no pretrained backbone where the model could load one."""
    import ferzoo

    spec = ferzoo.model_info(model_name)
    extra = {"backbone_weights": None} if "backbone_weights" in (spec.init_config or ()) else {}
    return ferzoo.build(model_name, num_classes=classes, input_shape=_input_shape(model_name, size), **extra)


def ferzoo_side(size: int, classes: int, policy: str, model_name: str = "dan") -> dict:
    """ferzoo's DAN (or ``model_name``) under ``policy``: Keras ``predict_on_batch`` / ``train_on_batch``, and two
    inference paths on the same weights: the frozen graph (``ferzoo.export.frozen_predictor``) and an
    XLA-compiled forward (``tf.function(jit_compile=True)``)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from ferzoo.export import frozen_predictor

    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = _build(model_name, size, classes)
        model.compile()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    rng = np.random.default_rng(0)
    data = {b: rng.uniform(0, 255, (b, *_input_shape(model_name, size))).astype("float32") for b in (1, 32, 64)}
    y32 = rng.integers(0, classes, 32).astype("int32")
    frozen = frozen_predictor(model)
    xla = tf.function(lambda x: model(x, training=False)["probabilities"], jit_compile=True)
    tensors = {b: tf.constant(v) for b, v in data.items()}
    return {"keras": {"b1": lambda: model.predict_on_batch(data[1]), "b64": lambda: model.predict_on_batch(data[64]),
                      "train": lambda: model.train_on_batch(data[32], y32)},
            "frozen": {"b1": lambda: frozen(data[1]), "b64": lambda: frozen(data[64])},
            "xla": {"b1": lambda: xla(tensors[1]).numpy(), "b64": lambda: xla(tensors[64]).numpy()}}


def matmul_gflops(kind: str, n: int) -> dict:
    """``{dtype: fn}``: each call times three ``n``-square matrix products in ``dtype`` (float32, bfloat16) with
    the framework of the worker and returns the median GFLOP/s (2 n^3 operations per product): the arithmetic
    peak the roofline table measures each side against."""
    if kind == "ferzoo":
        import tensorflow as tf

        def make(dtype):
            a, b = (tf.cast(tf.random.stateless_normal([n, n], [i, 0]), dtype) for i in (1, 2))
            f = tf.function(lambda: tf.reduce_sum(tf.cast(tf.matmul(a, b)[:1, :1], tf.float32)))
            return lambda: 2 * n ** 3 / median_seconds(lambda: f().numpy(), 3) / 1e9
    else:
        import torch

        def make(dtype):
            g = torch.Generator().manual_seed(0)
            a, b = (torch.randn(n, n, generator=g).to(getattr(torch, dtype)) for _ in range(2))
            return lambda: 2 * n ** 3 / median_seconds(lambda: (a @ b)[0, 0].item(), 3) / 1e9
    return {dtype: make(dtype) for dtype in ("float32", "bfloat16")}


def serve(kind: str, size: int, classes: int, matmul: int, conn, model_name: str = "dan") -> None:
    """A worker process holding one framework's models (TensorFlow's and PyTorch's thread pools never share a
    process, and only one worker runs at a time): it answers ``(side, key, n)`` with the median seconds."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if kind == "ferzoo":
        sides = {}
        for label, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
            for path, fns in ferzoo_side(size, classes, policy, model_name).items():
                sides[f"ferzoo {label}" + ("" if path == "keras" else f" {path}")] = fns
    else:
        fns = torch_side(size, classes, model_name)
        sides = {"pytorch float32": {k: (lambda f=f: f(False)) for k, f in fns.items()},
                 "pytorch bfloat16": {k: (lambda f=f: f(True)) for k, f in fns.items()}}
    for side in sides.values():  # warm-up: graph tracing, XLA compilation, oneDNN primitive caches
        for fn in side.values():
            fn()
            fn()
    peak = matmul_gflops(kind, matmul)
    for dtype in ("float32", "bfloat16"):
        peak[dtype]()  # warm-up
    info = {"sides": {name: sorted(fns) for name, fns in sides.items()}}
    if kind == "ferzoo":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_daf_cnn import forward_macs

        info["macs"] = forward_macs(_build(model_name, size, classes))
    conn.send(info)
    while True:
        msg = conn.recv()
        if msg is None:
            return
        name, key, n = msg
        conn.send(peak[key]() if name == "peak" else median_seconds(sides[name][key], n))


def main(argv=None) -> int:
    import multiprocessing as mp

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dan", choices=sorted(LABELS), help="the network to compare (default dan)")
    p.add_argument("--size", type=int, help="input height and width (default: the model's paper input size)")
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--b1", type=int, default=10, help="timed batch-1 calls per round")
    p.add_argument("--train-steps", type=int, default=3)
    p.add_argument("--matmul", type=int, default=4096, help="size of the square matmul that measures the peak")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.size is None:
        import ferzoo

        args.size = ferzoo.model_info(args.model).default_input_shape[0]
        print(f"input size {args.size} (the default for {args.model}; --size chooses)", file=sys.stderr)
    for option in ("size", "classes", "rounds", "b1", "train_steps", "matmul"):
        if getattr(args, option) < 1:
            p.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")

    ctx = mp.get_context("spawn")
    workers = {}
    for kind in ("ferzoo", "pytorch"):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(kind, args.size, args.classes, args.matmul, child, args.model),
                           daemon=True)
        proc.start()
        workers[kind] = (proc, parent)
    infos = {kind: conn.recv() for kind, (_, conn) in workers.items()}  # both warmed up
    names = {kind: info["sides"] for kind, info in infos.items()}
    macs = infos["ferzoo"]["macs"]

    def ask(name: str, key: str, n: int, worker: str | None = None) -> float:
        conn = workers[worker or ("ferzoo" if name.startswith("ferzoo") else "pytorch")][1]
        conn.send((name, key, n))
        return conn.recv()

    keys = {**names["ferzoo"], **names["pytorch"]}
    order = [*sorted(names["ferzoo"]), *sorted(names["pytorch"])]
    samples = {name: {"b1_ms": [], "b64_img_s": [], "train_img_s": []} for name in order}
    peaks = {(kind, dtype): [] for kind in workers for dtype in ("float32", "bfloat16")}
    for r in range(args.rounds):
        for kind, dtype in peaks:
            peaks[kind, dtype].append(ask("peak", dtype, 0, worker=kind))
        for name in order:
            samples[name]["b1_ms"].append(1000 * ask(name, "b1", args.b1))
            samples[name]["b64_img_s"].append(64 / ask(name, "b64", 1))
            if "train" in keys[name]:
                samples[name]["train_img_s"].append(32 / ask(name, "train", args.train_steps))
        print(f"round {r + 1}: " + json.dumps({n: {k: round(v[-1], 2) for k, v in s.items() if v}
                                               for n, s in samples.items()}), flush=True)
    for proc, conn in workers.values():
        conn.send(None)
        proc.join(timeout=30)
    result = {n: {k: statistics.median(v) if v else None for k, v in s.items()} for n, s in samples.items()}
    ref = result["pytorch float32"]
    label = LABELS[args.model]
    shape = "x".join(map(str, _input_shape(args.model, args.size)))
    print(f"\n{label} {shape}, {args.classes} classes, 2 threads, median of {args.rounds} interleaved rounds\n")
    print("| side | batch-1 ms | vs PyTorch f32 | batch-64 img/s | vs PyTorch f32 | train b32 img/s | vs PyTorch f32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in result.items():
        train = (f"{r['train_img_s']:.1f} | {r['train_img_s'] / ref['train_img_s']:.2f}x"
                 if r["train_img_s"] is not None else "- | -")
        print(f"| {name} | {r['b1_ms']:.2f} | {r['b1_ms'] / ref['b1_ms']:.2f}x | {r['b64_img_s']:.1f} | "
              f"{r['b64_img_s'] / ref['b64_img_s']:.2f}x | {train} |")
    peak = {f"{kind} {dtype}": statistics.median(v) for (kind, dtype), v in peaks.items()}
    gflop = 2 * macs / 1e9
    print(f"\nRoofline: {label} forward {macs / 1e9:.3f} G MACs = {gflop:.2f} GFLOP per image; each framework's "
          f"{args.matmul}-square matmul (median of {args.rounds} rounds):\n")
    print("| side | matmul GFLOP/s | batch-1 floor ms | batch-1 % of peak | batch-64 % of peak | train % of peak (3x forward) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in result.items():
        kind, dtype = name.split()[:2]
        gflops = peak[f"{kind} {dtype}"]
        floor = 1000 * gflop / gflops
        train = f"{100 * r['train_img_s'] * 3 * gflop / gflops:.0f}%" if r["train_img_s"] is not None else "-"
        print(f"| {name} | {gflops:.0f} | {floor:.1f} | {100 * floor / r['b1_ms']:.0f}% | "
              f"{100 * r['b64_img_s'] * gflop / gflops:.0f}% | {train} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "samples": samples, "median": result,
                                               "macs": macs, "matmul_gflops": peak}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
