"""Every built-in model trains a step under mixed float16 and bfloat16 with finite losses: the core computes
the auxiliary losses (centre distances, affinity, partition, triplet-centre ...) in float32."""

import keras
import numpy as np
import pytest

import ferzoo

BUILT_IN = sorted(m for m in ferzoo.list_models() if ferzoo.model_info(m).plugin != "toy_plugin")


@pytest.fixture
def policy(request):
    before = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(request.param)
    yield request.param
    keras.mixed_precision.set_global_policy(before)


#: LNLAttenNet's float16 step took about 60 s on the 2-core CPU (float16 is emulated there), so the default run
#: steps it in bfloat16 and leaves float16 to ``pytest -m slow``
#: DAN, FDRL and the paper DAF-CNN in float16 (10-20 s each, a GPU setting) moved there too when the default run
#: passed 15 minutes; Deep-Emotion and the compact DAF-CNN still step in float16 by default
SLOW = {("lnlattennet", "mixed_float16"), ("dan", "mixed_float16"), ("fdrl", "mixed_float16"),
        ("daf_cnn", "mixed_float16"), ("lnlattennet_cpu", "mixed_float16")}
CASES = [pytest.param(name, "mixed_float16", marks=[pytest.mark.slow] if (name, "mixed_float16") in SLOW else [])
         for name in BUILT_IN] + [("daf_cnn_compact", "mixed_bfloat16"), ("lnlattennet", "mixed_bfloat16")]


@pytest.mark.parametrize("name,policy", CASES, indirect=["policy"])
def test_a_mixed_precision_step_gives_finite_losses(name, policy):
    spec = ferzoo.model_info(name)
    size = max(int(spec.min_size or 32), 32)
    channels = spec.default_input_shape[-1]
    shape = tuple(spec.input_shapes[0]) if spec.input_shapes else (size, size, channels)
    keras.utils.set_random_seed(0)
    kwargs = {"backbone_weights": None} if "backbone_weights" in (spec.init_config or ()) else {}
    model = ferzoo.build(name, num_classes=7, input_shape=shape, **kwargs)
    model.compile()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (8, *shape)).astype("float32")
    y = np.array([0, 1, 2, 3, 4, 5, 6, 0], np.int32)
    logs = model.train_on_batch(x, y, return_dict=True)
    assert logs and all(np.isfinite(v) for v in logs.values()), logs
    assert all(np.all(np.isfinite(np.asarray(w, np.float32))) for w in model.weights)
    # every auxiliary loss term is reported and computed in float32
    assert {f"{loss.name}_loss" for loss in model.aux_losses} <= set(logs)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
