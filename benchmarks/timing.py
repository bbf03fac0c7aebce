"""The timing rule the benchmark scripts share (imported as ``timing``: each script runs from this folder)."""

from __future__ import annotations

from ferzoo.benchmark import median_seconds  # noqa: F401  (the core's timing rule, re-exported for the scripts)


def tflite_call(interp, batch):
    """A call that runs a LiteRT interpreter on ``batch`` (resized and allocated once, here): ``set_tensor`` +
    ``invoke`` + ``get_tensor``, what a latency figure times. The pixels are cast to the input's dtype as they are
    (ferzoo's int8 exports take raw 0..255 pixels, scale 1)."""
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(batch.shape))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    data = batch.astype(inp["dtype"])

    def run():
        interp.set_tensor(inp["index"], data)
        interp.invoke()
        return interp.get_tensor(out["index"])

    return run
