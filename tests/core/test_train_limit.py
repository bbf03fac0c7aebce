"""``--limit N`` trains on the same N examples every epoch, also where the reader reshuffles its file table
each pass (FER-2013's); a cached distillation on a limited run finds every image it cached."""

import numpy as np

from ferzoo.train import read_data, resolve_job


def _fer2013_csv(path, n=40):
    rng = np.random.default_rng(1)
    with open(path, "w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for i in range(n):
            fh.write(f"{i % 7},{' '.join(str(v) for v in rng.integers(0, 256, 48 * 48))},"
                     f"{'Training' if i < 30 else 'PublicTest'}\n")


def test_limit_keeps_the_same_examples_every_pass(registry, tmp_path):
    _fer2013_csv(tmp_path / "fer2013.csv")
    job = resolve_job("toy", "fer2013", str(tmp_path), epochs=1, batch_size=4, tag=None,
                      output=str(tmp_path / "run"), recipe=None, val_split=None, seed=0, limit=6, verbose=0,
                      config=None, dataset_options=None, command="pytest", input_shape=None, init_from=None,
                      resume=False, say=lambda _line: None)
    data = read_data(job)
    assert data.reader_shuffled  # the reader reshuffles its file table each pass ...
    passes = [sorted(x.tobytes() for x, _ in data.train.as_numpy_iterator()) for _ in range(3)]
    assert len(passes[0]) == 6 and passes[0] == passes[1] == passes[2]  # ... and the limited split stays put
