"""tf.distribute without a GPU: two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy through
TF_CONFIG) train the same steps as one process on the same global batch; strategy names are checked."""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent

WORKER = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import ferzoo
    from ferzoo.train import train
    from toy_plugin import ToyPlugin
    ferzoo.register_plugin(ToyPlugin(), name="toy_plugin")
    out = train(sys.argv[2], dataset="synthetic", epochs=2, batch_size=int(sys.argv[4]), strategy=sys.argv[3],
                val_split="none", output=sys.argv[5], verbose=0, limit=64, say=lambda _l: None)
    import numpy as np
    print("RESULT" + json.dumps({"loss": out["history"]["loss"], "weights": out["weights"],
                                 "values": [np.asarray(w).tolist() for w in out["model"].get_weights()]}))
""")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _result(proc):
    out, err = proc.communicate(timeout=300)
    line = next((l for l in out.splitlines() if l.startswith("RESULT")), None)
    assert line, err[-3000:]
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("model_name", ["toy_rule"])
def test_two_workers_on_localhost_agree_with_one_process(tmp_path, model_name):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "FERZOO_HOME": str(tmp_path / "home"),
           "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    env.pop("TF_CONFIG", None)
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        cfg = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [sys.executable, str(script), str(HERE), model_name, "multiworker", "8", str(tmp_path / f"w{index}")],
            env={**env, "TF_CONFIG": cfg}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    chief, other = (_result(w) for w in workers)
    single = _result(subprocess.Popen(  # one process, the same global batch (2 workers x 8)
        [sys.executable, str(script), str(HERE), model_name, "default", "16", str(tmp_path / "one")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    # only the chief (worker 0) writes the weights and the card
    assert chief["weights"] and Path(chief["weights"]).is_file() and other["weights"] is None
    assert not (tmp_path / "w1").exists() or not any((tmp_path / "w1").rglob("*.weights.h5"))
    np.testing.assert_allclose(chief["loss"], single["loss"], rtol=1e-4)
    for a, b, c in zip(chief["values"], other["values"], single["values"]):  # rule-updated centres included
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-3, atol=1e-5)


def test_strategy_names_and_tf_config_are_checked(monkeypatch):
    from ferzoo.train import pick_strategy

    with pytest.raises(ValueError, match=r"--strategy: 'tpu' is not one of auto, default, one-device, mirrored, "
                                         r"multiworker"):
        pick_strategy("tpu")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=r"--strategy multiworker: TF_CONFIG is not set"):
        pick_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ValueError, match=r"TF_CONFIG is not valid JSON"):
        pick_strategy("multiworker")
    assert pick_strategy("one-device").num_replicas_in_sync == 1
