"""A tiny RAF-DB release folder for the FDRL load-path test (a module of its own: `conftest` names clash
across test folders when pytest collects them together)."""

from pathlib import Path

RAF_NATIVE = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # RAF-DB labels 1..7


def write_rafdb(root: Path, n_train: int = 14, n_test: int = 7) -> Path:
    """A tiny RAF-DB ``basic/`` folder in the release's layout: ``EmoLabel/list_patition_label.txt`` and
    ``Image/aligned/<name>_aligned.jpg`` (100 x 100 RGB). Returns the ``basic`` folder."""
    from fakes import face, save

    basic = Path(root) / "basic"
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 7 + 1
            name = f"{split}_{i + 1:05d}"
            save(basic / "Image" / "aligned" / f"{name}_aligned.jpg", face(RAF_NATIVE[label - 1], (100, 100), 3, i),
                 quality=95)
            lines.append(f"{name}.jpg {label}\n")
    (basic / "EmoLabel").mkdir(parents=True, exist_ok=True)
    (basic / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))
    return basic
