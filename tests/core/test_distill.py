"""Knowledge distillation (ferzoo.distill): the loss on hand values, class matching by name, teachers of another
input spec, online and cached teacher outputs, the student moving towards its teacher, the train / CLI / recipe
paths."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo import distill
from ferzoo.data import prepare, synthetic

CLASSES = ["angry", "disgust", "fear"]


def _toy(classes=CLASSES, shape=(16, 16, 1), seed=0, sharpen=1.0):
    keras.utils.set_random_seed(seed)
    model = ferzoo.build("toy", num_classes=len(classes), class_names=list(classes), input_shape=shape)
    if sharpen != 1.0:  # a confident teacher: its probabilities are far from uniform
        fc = model.get_layer("fc")
        fc.set_weights([w * sharpen for w in fc.get_weights()])
    return model


def _images(n=2, size=16, channels=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, channels)).astype(np.float32)


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _loss(model, x, y, training=True):
    return float(model.compute_loss(x=x, y=y, y_pred=model(x, training=training), training=training))


# -- the loss on a 2-image batch, by hand ----------------------------------------------------------------------
@pytest.mark.parametrize("temperature, alpha, n_teachers", [(1.0, 0.3, 1), (4.0, 0.8, 2)])
def test_loss_on_a_two_image_batch_matches_the_hand_computed_value(registry, temperature, alpha, n_teachers):
    student = _toy(seed=0)
    student.compile()
    # teachers of another input: 20x20 RGB and 12x12 gray (the student's 16x16 gray batch is converted for each)
    teachers = [_toy(shape=(20, 20, 3), seed=1, sharpen=4.0), _toy(shape=(12, 12, 1), seed=2, sharpen=3.0)][:n_teachers]
    x, y = _images(2), np.array([2, 0], np.int32)
    own = _loss(student, x, y)
    d = distill.attach(student, teachers, temperature=temperature, alpha=alpha, mode="online")
    assert d.mode == "online"

    out = student(x, training=True)
    zs = keras.ops.convert_to_numpy(out["logits"]).astype(np.float64)
    feats = keras.ops.convert_to_numpy(out["features"]).astype(np.float64)
    ce = -_log_softmax(zs)[np.arange(2), y].mean()
    centres = keras.ops.convert_to_numpy(student.aux_losses[0].centres).astype(np.float64)
    aux = 0.1 * np.mean(np.sum((feats - centres[y]) ** 2, axis=-1))  # the toy recipe's centre weight 0.1
    np.testing.assert_allclose(own, ce + aux, rtol=1e-5)  # the student's own loss, before attaching
    # each teacher sees the batch converted to its own input (bilinear up, area down; gray -> RGB by copying)
    rgb20 = tf.image.resize(np.repeat(x, 3, axis=-1), (20, 20), method="bilinear")
    gray12 = tf.image.resize(x, (12, 12), method="area")
    probs = []
    for teacher, xt in zip(teachers, [rgb20, gray12]):
        zt = keras.ops.convert_to_numpy(teacher(xt, training=False)["logits"]).astype(np.float64)
        probs.append(np.exp(_log_softmax(zt / temperature)))
    p = np.mean(probs, axis=0)  # several teachers: averaged in probability space
    kl = np.mean(np.sum(p * (np.log(p) - _log_softmax(zs / temperature)), axis=-1))
    expected = alpha * temperature ** 2 * kl + (1 - alpha) * ce + aux
    assert kl > 1e-3  # the teachers disagree with the student: the soft term matters
    np.testing.assert_allclose(_loss(student, x, y), expected, rtol=1e-5)
    # validation steps: the student's own loss (the teachers do not run)
    np.testing.assert_allclose(_loss(student, x, y, training=False), ce + aux, rtol=1e-5)
    d.detach()
    np.testing.assert_allclose(_loss(student, x, y), own, rtol=1e-6)


def test_alpha_zero_is_the_students_own_loss_and_alpha_one_drops_the_labels(registry):
    student = _toy(seed=0)
    student.compile()
    teacher = _toy(seed=1, sharpen=4.0)
    x = _images(2)
    own = _loss(student, x, np.array([0, 1], np.int32))
    distill.attach(student, teacher, alpha=0.0, mode="online")
    np.testing.assert_allclose(_loss(student, x, np.array([0, 1], np.int32)), own, rtol=1e-6)
    student.distillation.detach()
    distill.attach(student, teacher, alpha=1.0, temperature=2.0, mode="online")
    # with alpha 1 the hard labels enter only through the auxiliary (centre) loss: same loss for other labels
    # once the centres are equal
    student.aux_losses[0].centres.assign(np.zeros((3, 8), np.float32))
    np.testing.assert_allclose(_loss(student, x, np.array([0, 1], np.int32)),
                               _loss(student, x, np.array([2, 2], np.int32)), rtol=1e-6)


# -- classes by name -------------------------------------------------------------------------------------------
def _permuted(teacher, order):
    """``teacher`` with its classes in ``order`` (names): the same function, outputs permuted."""
    perm = [teacher.class_names.index(c) for c in order]
    other = _toy(classes=order, shape=teacher.input_shape_hwc, seed=5)
    other.set_weights(teacher.get_weights())
    fc = other.get_layer("fc")
    kernel, bias = fc.get_weights()
    fc.set_weights([kernel[:, perm], bias[perm]])
    return other


def test_an_rgb_students_batch_reaches_a_gray_teacher_by_luma_and_through_its_cards_centre_crop(registry):
    """The conversion the DAN / FDRL teachers (a 72 -> 64 centre crop) and a gray teacher of an RGB student get:
    ITU-R 601 luma, the resize to the card's ``eval_crop`` (area when shrinking), then the centre crop."""
    teacher = _toy(shape=(12, 12, 1), seed=2)
    teacher.eval_crop = [14, 14]
    student = _toy(shape=(16, 16, 3), seed=3)
    x = _images(2, size=16, channels=3, seed=4)
    luma = (x * np.array([0.299, 0.587, 0.114], np.float32)).sum(-1, keepdims=True)
    by_hand = tf.image.resize(luma, (14, 14), method="area").numpy()[:, 1:13, 1:13]  # (14 - 12) / 2 = 1 each side
    t = distill.Teacher.from_model(teacher)
    np.testing.assert_allclose(t.convert(x).numpy(), by_hand, rtol=1e-5, atol=1e-3)
    d = distill.attach(student, [t], temperature=2.0, alpha=0.5, mode="online")
    want = _log_softmax(keras.ops.convert_to_numpy(teacher(by_hand, training=False)["logits"]))
    np.testing.assert_allclose(d.teacher_log_probs(x).numpy()[:, 0], want, atol=1e-4)


def test_a_teacher_with_another_class_order_is_matched_by_name(registry):
    student = _toy(seed=0)
    student.compile()
    teacher = _toy(shape=(20, 20, 3), seed=1, sharpen=4.0)
    permuted = _permuted(teacher, ["fear", "angry", "disgust"])
    x, y = _images(2), np.array([1, 2], np.int32)
    xt = tf.image.resize(np.repeat(x, 3, axis=-1), (20, 20))
    a = keras.ops.convert_to_numpy(teacher(xt)["probabilities"])
    b = keras.ops.convert_to_numpy(permuted(xt)["probabilities"])
    np.testing.assert_allclose(b, a[:, [2, 0, 1]], rtol=1e-5)  # the same teacher, another order
    assert not np.allclose(a, b, atol=1e-3)  # so index-matching would give another loss
    losses = []
    for t in (teacher, permuted):
        d = distill.attach(student, t, temperature=3.0, alpha=0.6, mode="online")
        losses.append(_loss(student, x, y))
        d.detach()
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-6)
    # a teacher that gives probabilities instead of logits: its log-probabilities are used, the same loss
    as_probs = distill.Teacher(lambda z: teacher(z, training=False)["probabilities"], teacher.class_names,
                               teacher.input_shape_hwc, outputs="probabilities", name="probs")
    d = distill.attach(student, as_probs, temperature=3.0, alpha=0.6, mode="online")
    np.testing.assert_allclose(_loss(student, x, y), losses[0], rtol=1e-5)
    d.detach()


def test_a_teacher_lacking_a_student_class_is_an_error_naming_it(registry):
    student = _toy(classes=["angry", "happy", "fear"])
    student.compile()
    with pytest.raises(ValueError, match=r"teacher 'toy' has no class 'happy' of the student's classes"):
        distill.attach(student, _toy(), mode="online")
    assert "distillation" not in student.__dict__  # nothing attached


def test_a_teacher_with_more_classes_is_renormalised_over_the_students(registry):
    student = _toy(seed=0)
    student.compile()
    teacher = _toy(classes=["happy", "angry", "disgust", "fear"], seed=1, sharpen=3.0)
    d = distill.attach(student, teacher, temperature=2.0, mode="online")
    x = _images(2)
    zt = keras.ops.convert_to_numpy(teacher(x)["logits"]).astype(np.float64)[:, 1:]
    got = np.exp(keras.ops.convert_to_numpy(d.targets(x)))
    np.testing.assert_allclose(got, np.exp(_log_softmax(zt / 2.0)), rtol=1e-5)


# -- cached teacher outputs ------------------------------------------------------------------------------------
def _generated(n_per_class=6, size=16, seed=0):
    return synthetic(num_classes=3, size=size, per_class=n_per_class, seed=seed, class_names=CLASSES)


def test_cached_outputs_give_the_online_loss_and_labels_travel_packed(registry):
    student = _toy(seed=0)
    student.compile()
    teacher = _toy(shape=(20, 20, 3), seed=1, sharpen=4.0)
    ds = _generated()
    lines = []
    d = distill.attach(student, teacher, temperature=2.0, alpha=0.5, mode="cached", data=ds, say=lines.append)
    assert d.mode == "cached" and d.cached_images == 18
    assert any("cached (teacher outputs computed once per training image" in l for l in lines), lines
    # the packed stream, shuffled: each image still finds its own row
    x, packed = next(iter(prepare(d.data, (16, 16, 1), batch_size=18, shuffle=18, seed=3)))
    x, packed = x.numpy(), packed.numpy()
    labels = packed % 3
    assert packed.min() >= 3
    plain = np.concatenate([y for _, y in prepare(ds, (16, 16, 1), batch_size=18).as_numpy_iterator()])
    assert sorted(labels.tolist()) == sorted(plain.tolist())
    cached = _loss(student, x, packed)
    metrics = {k: float(v) for k, v in student.compute_metrics(x, packed, student(x)).items()}
    d.detach()
    d2 = distill.attach(student, teacher, temperature=2.0, alpha=0.5, mode="online")
    np.testing.assert_allclose(cached, _loss(student, x, labels), rtol=1e-5)
    accuracy = float(np.mean(keras.ops.convert_to_numpy(student(x)["probabilities"]).argmax(-1) == labels))
    assert metrics["accuracy"] == pytest.approx(accuracy)
    d2.detach()
    # plain labels in cached mode are refused, not read as row 0
    distill.attach(student, teacher, mode="cached", data=ds)
    with pytest.raises(tf.errors.InvalidArgumentError, match="carries no cache row"):
        _loss(student, x, labels)


def test_auto_mode_caches_for_a_larger_teacher_and_runs_a_smaller_one_online(registry):
    student = _toy(seed=0)
    student.compile()
    big = _toy(shape=(24, 24, 3), seed=1)
    assert big.count_params() > student.count_params()
    lines = []
    d = distill.attach(student, big, data=_generated(2), say=lines.append)
    assert d.mode == "cached" and "auto: the teachers have" in lines[0]
    d.detach()
    d = distill.attach(student, _toy(shape=(12, 12, 1), seed=2), data=_generated(2), say=lines.append)
    assert d.mode == "online" and d.data is not None


def test_the_teachers_stay_out_of_the_students_weights(registry, tmp_path):
    student = _toy(seed=0)
    student.compile()
    n = len(student.weights)
    distill.attach(student, _toy(shape=(20, 20, 3), seed=1), mode="online")
    assert len(student.weights) == n
    student.save_weights(str(tmp_path / "s.weights.h5"))
    fresh = _toy(seed=3)
    fresh.load_weights(str(tmp_path / "s.weights.h5"))
    x = _images(2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fresh(x)["logits"]),
                               keras.ops.convert_to_numpy(student(x)["logits"]), rtol=1e-6)


# -- the student moves towards the teacher ---------------------------------------------------------------------
def _mean_kl(teacher, student, x):
    p = keras.ops.convert_to_numpy(teacher(x)["probabilities"]).astype(np.float64)
    q = keras.ops.convert_to_numpy(student(x)["probabilities"]).astype(np.float64)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis=-1)))


@pytest.mark.parametrize("mode", ["online", "cached"])
def test_a_distilled_student_moves_towards_its_teacher(registry, mode):
    teacher = _toy(seed=1, sharpen=6.0)
    student = _toy(seed=2)
    student.compile()
    ds = _generated(8)
    x_all = np.concatenate([x for x, _ in prepare(ds, (16, 16, 1), batch_size=64).as_numpy_iterator()])
    before = _mean_kl(teacher, student, x_all)
    d = distill.attach(student, teacher, temperature=2.0, alpha=0.9, mode=mode, data=ds)
    hist = student.fit(prepare(d.data, (16, 16, 1), batch_size=8, shuffle=24, seed=0), epochs=6, verbose=0)
    after = _mean_kl(teacher, student, x_all)
    assert before > 0.05
    assert after < 0.6 * before, (before, after)
    assert "distill_loss" in hist.history and "centre_loss" in hist.history  # the student's aux loss is kept
    assert hist.history["distill_loss"][-1] < hist.history["distill_loss"][0]


# -- settings and teacher names --------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, message", [
    ({"temperature": 0}, "distillation temperature must be a number > 0"),
    ({"alpha": 1.5}, r"distillation alpha must be a number in \[0, 1\] \(the weight of the teachers' term\)"),
    ({"mode": "lazy"}, "distillation mode must be one of auto, cached, online"),
    ({"temp": 2}, "unknown setting 'temp'"),
])
def test_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        distill.check_settings(settings)


def test_teacher_names_are_checked_without_loading(registry, tmp_path):
    with pytest.raises(ValueError, match=r"--teacher 'toy': expected NAME.TAG"):
        distill.check_teacher("toy")
    with pytest.raises(ValueError, match=r"no model 'nosuch'"):
        distill.check_teacher("nosuch.fer2013")
    with pytest.raises(ValueError, match=r"model 'toy' has no weights 'nope'"):
        distill.check_teacher("toy.nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        distill.check_teacher(str(tmp_path / "missing.weights.h5"))


# -- the train driver, the command line and recipes ------------------------------------------------------------
def test_cli_trains_a_student_from_a_teacher_tag_and_a_weights_file(registry, tmp_path, capsys):
    from ferzoo.cli import main
    from ferzoo import weights as W

    # a teacher of another input (24x24 RGB) for the student (16x16 gray); both carry the toy centre loss
    assert main(["train", "toy", "--dataset", "synthetic", "--epochs", "1", "--limit", "32", "--input-shape",
                 "24,24,3", "--tag", "teach"]) == 0
    teacher_file = W.store_dir("toy", "teach") / "toy.weights.h5"
    teacher_card = W.read_card(teacher_file)
    capsys.readouterr()
    assert main(["train", "toy", "--dataset", "synthetic", "--epochs", "2", "--limit", "48", "--teacher",
                 "toy.teach", "--temperature", "3", "--alpha", "0.5", "--tag", "student"]) == 0
    err = capsys.readouterr().err
    assert "distillation from toy.teach (T=3, alpha=0.5): cached" in err  # auto: the teacher is the larger
    assert "teachers' outputs for 48 training images (48 distinct) computed once in" in err
    card = W.read_card(W.store_dir("toy", "student") / "toy.weights.h5")
    assert card["recipe"]["distillation"] == {"temperature": 3.0, "alpha": 0.5, "mode": "auto"}  # as asked
    used = card["distillation"]  # and as used
    assert (used["mode"], used["temperature"], used["alpha"]) == ("cached", 3.0, 0.5)
    (entry,) = card["recipe"]["teachers"]
    assert entry["weights"] == "toy.teach" and entry["sha256"] == teacher_card["sha256"]
    assert entry["input_shape"] == [24, 24, 3] and entry["model"] == "toy"
    history = json.loads((W.store_dir("toy", "student") / "history.json").read_text())
    assert len(history["distill_loss"]) == 2 and "val_distill_loss" not in history and "centre_loss" in history
    student = ferzoo.load("toy", weights="student")  # the student's weights alone
    assert student.input_shape_hwc == (16, 16, 1)

    # a weights file, run online
    out = tmp_path / "online"
    assert main(["train", "toy", "--dataset", "synthetic", "--epochs", "1", "--limit", "32", "--teacher",
                 str(teacher_file), "--distill-mode", "online", "--output", str(out)]) == 0
    assert "online (the teachers run on every augmented training batch; as asked)" in capsys.readouterr().err
    card = W.read_card(out / "toy.weights.h5")
    assert card["recipe"]["distillation"]["mode"] == "online"
    assert card["recipe"]["teachers"][0]["weights"] == str(teacher_file)


@pytest.mark.parametrize("argv, message", [
    (["--teacher", "toy.nope"], "--teacher 'toy.nope': model 'toy' has no weights 'nope'"),
    (["--teacher", "toy"], "--teacher 'toy': expected NAME.TAG"),
    (["--temperature", "2"], "--temperature: distillation settings need teachers"),
])
def test_cli_usage_errors_are_one_line_and_exit_2(registry, capsys, argv, message):
    from ferzoo.cli import main

    assert main(["train", "toy", "--dataset", "synthetic", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ferzoo: error: ") and message in err and "\n" not in err, err


@pytest.mark.parametrize("argv", [["--alpha", "1.5"], ["--temperature", "0"], ["--temperature", "inf"],
                                  ["--distill-mode", "lazy"]])
def test_cli_rejects_bad_settings(registry, capsys, tmp_path, argv):
    from ferzoo.cli import main

    teacher = _toy()
    from ferzoo import weights as W

    W.save(teacher, tmp_path / "toy.weights.h5")
    try:
        code = main(["train", "toy", "--teacher", str(tmp_path / "toy.weights.h5"), *argv])
    except SystemExit as exc:  # argparse's own check of the option's type
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert argv[0] in err and "\n" not in err and "Traceback" not in err, err


def test_a_recipe_names_teachers(registry, tmp_path):
    from ferzoo import ModelSpec, hookimpl
    from ferzoo import weights as W
    from ferzoo.labels import BASIC7
    from ferzoo.train import train
    from toy_plugin import build_toy, toy_losses

    teacher = _toy(shape=(24, 24, 3), seed=1, sharpen=3.0, classes=list(BASIC7))
    teacher_file = tmp_path / "teacher" / "toy.weights.h5"
    W.save(teacher, teacher_file)

    class Student:
        @hookimpl
        def register_models(self, register):
            register(ModelSpec(
                name="toy_student", builder=build_toy, losses=toy_losses, default_input_shape=(16, 16, 1),
                channels=(1, 3), min_size=8, default_config={"width": 8, "dropout": 0.0}, mean=(0.5,), std=(0.25,),
                recipes={"default": {"epochs": 1, "batch_size": 32, "loss_weights": {"centre": 0.1},
                                     "teachers": [str(teacher_file)],
                                     "distillation": {"temperature": 2.0, "alpha": 0.4, "mode": "online"}}},
                description="a student whose recipe names its teacher"))

    registry.register(Student(), name="student_plugin")
    lines = []
    result = train("toy_student", "synthetic", output=str(tmp_path / "s"), say=lines.append, verbose=0, limit=48)
    assert any("distillation from" in l and "online" in l for l in lines), lines
    rec = result["card"]["recipe"]
    assert rec["distillation"] == {"temperature": 2.0, "alpha": 0.4, "mode": "online"}
    assert rec["teachers"][0]["weights"] == str(teacher_file)
    assert "distill_loss" in result["history"]
    # the caller's settings override the recipe's one at a time; the caller's teachers replace the recipe's
    from ferzoo.recipes import resolve_recipe

    rec = resolve_recipe(ferzoo.model_info("toy_student").recipe_table(), "default", "toy_student")
    distill.resolve_request(rec, None, {"alpha": 0.9, "mode": None})
    assert rec["distillation"] == {"temperature": 2.0, "alpha": 0.9, "mode": "online"}
    assert rec["teachers"][0]["sha256"] == W.read_card(teacher_file)["sha256"]
    with pytest.raises(ValueError, match=r"--teacher 'toy.nope': model 'toy' has no weights 'nope'"):
        distill.resolve_request(rec, ["toy.nope"], {})
    with pytest.raises(ValueError, match=r"recipe 'x', teachers entry 'nosuch.tag': no model 'nosuch'"):
        distill.resolve_request({"teachers": ["nosuch.tag"]}, None, {}, of_recipe="recipe 'x'")
    with pytest.raises(ValueError, match=r"the entry pins 0000000000000000"):
        distill.resolve_request({"teachers": [{"weights": str(teacher_file), "sha256": "0" * 64}]})


def test_a_teacher_runs_with_its_cards_test_time_augmentation(registry):
    student = _toy(seed=0)
    student.compile()
    teacher = _toy(seed=1, sharpen=4.0)
    teacher.tta = "flip"  # as a card with "tta": "flip" loads it
    d = distill.attach(student, teacher, temperature=1.0, mode="online")
    x = _images(2)
    p = keras.ops.convert_to_numpy(teacher(x)["probabilities"])
    p_flip = keras.ops.convert_to_numpy(teacher(x[:, :, ::-1])["probabilities"])
    np.testing.assert_allclose(np.exp(keras.ops.convert_to_numpy(d.targets(x))), (p + p_flip) / 2, rtol=1e-5)
    assert not np.allclose(p, p_flip, atol=1e-3)
