import numpy as np
import pytest

from ferzoo.metrics import classification_report


def test_report_hand_computed():
    names = ["a", "b", "c"]
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    r = classification_report(y_true, y_pred, names)
    assert r["accuracy"] == pytest.approx(4 / 6)
    # recalls: a 2/3, b 1/2, c 1/1
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # precisions: a 2/2, b 1/2, c 1/2 ; f1 = 2pr/(p+r)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 * 0.5 / 1.0, 2 * 0.5 * 1 / 1.5]
    assert r["macro_f1"] == pytest.approx(np.mean(f1))
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert r["per_class"]["b"]["support"] == 2
    assert "confusion matrix" in str(r)


def test_absent_class_is_not_averaged_into_balanced_accuracy():
    r = classification_report([0, 0, 1], [0, 0, 1], ["a", "b", "c"])
    assert r["balanced_accuracy"] == 1.0 and r["macro_f1"] == 1.0


def test_bad_inputs():
    with pytest.raises(ValueError, match="out of range for 2 classes"):
        classification_report([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        classification_report([], [], ["a", "b"])
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        classification_report([0, 1, 1], [0, 1], ["a", "b"])
