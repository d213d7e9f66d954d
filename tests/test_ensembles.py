"""Teacher ensembles: the averaged targets against NumPy, soft labels and one-shot distill with several
`--teacher`s, provenance naming every teacher, and single-teacher files left exactly as they were."""

import h5py
import keras
import numpy as np
import pytest

import kdcli
from kdcli import pipeline
from kdcli.ensembles import ensemble_model, ensemble_sha256, log_mean_softmax
from kdcli.files import sha256_file
from kdcli.models import with_head
from kdcli.soft_labels import read_soft_labels, teacher_shas, write_soft_labels

from conftest import assert_one_line_error, run_cli


def softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two small teachers trained on digits (a, b: logits heads) and c, b's softmax-headed twin
    (the same weights: a plain Keras file, without provenance)."""
    d = tmp_path_factory.mktemp("ensembles")
    paths = {"dir": d, "a": d / "a.keras", "b": d / "b.keras", "c": d / "c.keras"}
    for name, width, seed in (("a", 32, 0), ("b", 16, 1)):
        r = run_cli("train-teacher", "--arch", "mlp", "--width", width, "--depth", 1, "--epochs", 4, "--seed", seed,
                    "--out", paths[name], "--quiet")
        assert r.exit_code == 0, r.stderr
    with_head(kdcli.load_model(paths["b"]), "softmax").save(paths["c"])
    r = run_cli("soft-labels", "--teacher", paths["a"], "--teacher", paths["b"], "--out", d / "ensemble.h5")
    assert r.exit_code == 0, r.stderr
    paths.update(ensemble=d / "ensemble.h5", soft_labels_run=r)
    return paths


def mean_probabilities(*models, x):
    """The NumPy reference: the mean of each model's own probabilities (a softmax model's output as it is)."""
    probs = []
    for model in models:
        out = kdcli.predict_logits(model, x)
        probs.append(out.astype(np.float64) if model.layers[-1].name == "probabilities" else softmax(out))
    return np.mean(probs, axis=0)


@pytest.mark.slow
def test_ensemble_logits_are_the_log_of_the_mean_probabilities(teachers):
    data = kdcli.load_data("digits")
    a, c = kdcli.load_model(teachers["a"]), kdcli.load_model(teachers["c"])
    assert c.layers[-1].name == "probabilities"  # a softmax teacher: its probabilities are the reference
    ensemble = ensemble_model([kdcli.logits_model(a), kdcli.logits_model(c)])
    logits = kdcli.predict_logits(ensemble, data.x_train)
    np.testing.assert_allclose(softmax(logits), mean_probabilities(a, c, x=data.x_train), rtol=0, atol=1e-5)
    assert ensemble_model([a]) is a  # one teacher: no ensemble, its own model


def test_log_mean_softmax_is_finite_for_extreme_logits():
    rng = np.random.default_rng(0)
    logits = [rng.normal(scale=1e4, size=(16, 5)).astype(np.float32) for _ in range(3)]
    z = np.asarray(log_mean_softmax(logits), np.float64)
    assert np.all(np.isfinite(z))
    np.testing.assert_allclose(softmax(z), np.mean([softmax(t) for t in logits], axis=0), rtol=0, atol=1e-5)


def test_soft_labels_with_two_teachers(teachers):
    r, out = teachers["soft_labels_run"], teachers["ensemble"]
    assert r.stdout == f"{out}\n"
    assert "of an ensemble of 2 teachers" in r.stderr
    data = kdcli.load_data("digits")
    soft = read_soft_labels(out)
    a, b = kdcli.load_model(teachers["a"]), kdcli.load_model(teachers["b"])
    np.testing.assert_allclose(softmax(soft.logits), mean_probabilities(a, b, x=data.x_train), rtol=0, atol=1e-5)
    shas = [sha256_file(teachers["a"]), sha256_file(teachers["b"])]
    assert soft.attrs["teacher_sha256s"] == shas == teacher_shas(soft.attrs)
    assert soft.attrs["teacher_sha256"] == ensemble_sha256(shas) == ensemble_sha256(shas[::-1])
    assert soft.attrs["teacher_sha256"] not in shas
    assert soft.attrs["format_version"] == 1  # the layout of a single teacher's file
    record = kdcli.read_provenance(out)
    assert record["teachers"] == [  # as given
        {"path": str(teachers["a"]), "format": "keras", "sha256": shas[0], "head": "logits"},
        {"path": str(teachers["b"]), "format": "keras", "sha256": shas[1], "head": "logits"}]
    assert "teacher" not in record and record["teacher_sha256"] == soft.attrs["teacher_sha256"]


@pytest.mark.slow
def test_one_shot_distill_from_two_teachers(teachers, tmp_path):
    out = tmp_path / "student.keras"
    # a (logits) and c (softmax, b's twin): the heads differ, so the student serves probabilities
    r = run_cli("distill", "--teacher", teachers["a"], "--teacher", teachers["c"], "--epochs", 1, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out}\n"
    data = kdcli.load_data("digits")
    a, c = kdcli.load_model(teachers["a"]), kdcli.load_model(teachers["c"])
    from kdcli.inference import accuracy

    record = kdcli.read_provenance(out)
    metrics = record["metrics"]
    each = [accuracy(a, data.test), accuracy(c, data.test)]
    together = float(np.mean(np.argmax(mean_probabilities(a, c, x=data.x_test), axis=1) == data.y_test))
    assert metrics["teacher_test_accuracies"] == pytest.approx(each)
    assert metrics["ensemble_test_accuracy"] == pytest.approx(together) == metrics["teacher_test_accuracy"]
    shas = [sha256_file(teachers["a"]), sha256_file(teachers["c"])]
    assert [t["sha256"] for t in record["teachers"]] == shas
    assert [t["head"] for t in record["teachers"]] == ["logits", "softmax"]
    assert record["teacher_sha256"] == ensemble_sha256(shas) and record["teacher"] is None
    assert record["output"] == "softmax" and record["hyperparameters"]["mode"] == "teacher-logits-once"
    lines = r.stderr.splitlines()
    assert any(line.startswith(f"teacher {teachers['a']}: test accuracy {100 * each[0]:.1f}%") for line in lines)
    assert any(line.startswith(f"teacher {teachers['c']}: test accuracy {100 * each[1]:.1f}%") for line in lines)
    assert f"ensemble of 2 teachers (the mean of their probabilities): test accuracy {100 * together:.1f}%" in lines
    # shrink:0.25 (the default) derives the student from the first teacher
    student = kdcli.load_model(out)
    assert student.count_params() == kdcli.shrink(a, 0.25).count_params()


@pytest.mark.slow
def test_online_distill_runs_the_ensemble_live(teachers, tmp_path):
    out = tmp_path / "online.keras"
    r = run_cli("distill", "--teacher", teachers["a"], "--teacher", teachers["b"], "--online", "--student", "mlp",
                "--width", 8, "--epochs", 1, "--out", out, "--quiet")
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["mode"] == "online" and len(record["teachers"]) == 2


@pytest.mark.slow
def test_distill_from_an_ensemble_file(teachers, tmp_path):
    out = tmp_path / "from-file.keras"
    r = run_cli("distill", "--soft-labels", teachers["ensemble"], "--student", "mlp", "--width", 8, "--epochs", 1,
                "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    shas = [sha256_file(teachers["a"]), sha256_file(teachers["b"])]
    assert record["hyperparameters"]["mode"] == "soft-labels"
    assert record["teacher_sha256"] == ensemble_sha256(shas)
    assert [t["sha256"] for t in record["teachers"]] == shas
    assert [t["path"] for t in record["teachers"]] == [str(teachers["a"]), str(teachers["b"])]  # from the student's folder
    # Its teachers beside it, all of them in any order: shrink derives from the first given, accuracies reported.
    out = tmp_path / "shrunk.keras"
    r = run_cli("distill", "--soft-labels", teachers["ensemble"], "--teacher", teachers["b"], "--teacher",
                teachers["a"], "--student", "shrink:0.5", "--epochs", 1, "--out", out)
    assert r.exit_code == 0, r.stderr
    assert "ensemble of 2 teachers" in r.stderr
    assert kdcli.load_model(out).count_params() == kdcli.shrink(kdcli.load_model(teachers["b"]), 0.5).count_params()
    # Not all of them, or another teacher: refused
    for given in ([teachers["a"]], [teachers["a"], teachers["c"]]):
        r = run_cli("distill", "--soft-labels", teachers["ensemble"], *[x for t in given for x in ("--teacher", t)],
                    "--epochs", 1, "--out", tmp_path / "no.keras")
        assert_one_line_error(r, 4, "were made with an ensemble of 2 teachers")


def test_teachers_must_agree_on_classes_and_inputs(teachers, tmp_path):
    for name, shape, classes in (("five", (8, 8), 5), ("flat", (64,), 10)):
        model = keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(classes)])
        model.save(tmp_path / f"{name}.keras")
    r = run_cli("soft-labels", "--teacher", teachers["a"], "--teacher", tmp_path / "five.keras",
                "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "five.keras: has 5 classes, a.keras has 10")
    r = run_cli("distill", "--teacher", teachers["a"], "--teacher", tmp_path / "flat.keras", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "flat.keras: takes inputs of shape (64,), a.keras of shape (8, 8)")
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "s.keras").exists()


def test_a_single_teacher_file_is_unchanged(teachers, tmp_path):
    data = kdcli.load_data("digits")
    a = kdcli.load_model(teachers["a"])
    r = run_cli("soft-labels", "--teacher", teachers["a"], "--out", tmp_path / "one.h5")
    assert r.exit_code == 0, r.stderr
    assert "ensemble" not in r.stderr
    pipeline.make_soft_labels([teachers["a"]], None, tmp_path / "list.h5")  # a list of one teacher: the same file
    for path in (tmp_path / "one.h5", tmp_path / "list.h5"):
        with h5py.File(path) as f:
            assert sorted(f.keys()) == ["logits"]
            assert sorted(f.attrs) == ["dtype", "fingerprint", "format", "format_version", "kdcli_version",
                                       "n", "num_classes", "provenance", "teacher_sha256", "top_k"]
        soft = read_soft_labels(path)
        np.testing.assert_array_equal(soft.logits, kdcli.predict_logits(a, data.x_train))  # the raw logits
        assert soft.attrs["teacher_sha256"] == sha256_file(teachers["a"])
        record = kdcli.read_provenance(path)
        assert list(record) == ["kind", "kdcli_version", "command", "created", "data", "teacher", "teacher_format",
                                "teacher_sha256", "teacher_head", "hyperparameters"]
    assert read_soft_labels(tmp_path / "list.h5").attrs == read_soft_labels(tmp_path / "one.h5").attrs | {
        "provenance": read_soft_labels(tmp_path / "list.h5").attrs["provenance"]}
    # a file written as before ensembles existed reads as one teacher's
    write_soft_labels(tmp_path / "old.h5", [np.zeros((4, 3), np.float32)], 4, 3, fingerprint="f", teacher_sha256="a",
                      record={})
    assert teacher_shas(read_soft_labels(tmp_path / "old.h5").attrs) == ["a"]


def test_sharded_ensemble_soft_labels_merge_with_their_teachers(teachers, tmp_path):
    parts = [tmp_path / f"part{i}.h5" for i in (1, 2)]
    for i, part in enumerate(parts, 1):
        r = run_cli("soft-labels", "--teacher", teachers["a"], "--teacher", teachers["b"], "--shard", f"{i}/2",
                    "--out", part, "--quiet")
        assert r.exit_code == 0, r.stderr
    r = run_cli("soft-labels", "merge", *parts, "--out", tmp_path / "merged.h5")
    assert r.exit_code == 0, r.stderr
    merged, whole = read_soft_labels(tmp_path / "merged.h5"), read_soft_labels(teachers["ensemble"])
    np.testing.assert_array_equal(merged.logits, whole.logits)  # the same batches as the unsharded run
    assert merged.attrs["teacher_sha256s"] == whole.attrs["teacher_sha256s"]
    assert kdcli.read_provenance(tmp_path / "merged.h5")["teachers"] == kdcli.read_provenance(teachers["ensemble"])["teachers"]


def test_shrink_from_an_ensemble_file_needs_all_its_teachers(teachers, tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.keras").write_bytes(teachers[name].read_bytes())
    r = run_cli("soft-labels", "--teacher", tmp_path / "a.keras", "--teacher", tmp_path / "b.keras",
                "--out", tmp_path / "soft.h5", "--quiet")
    assert r.exit_code == 0, r.stderr
    (tmp_path / "b.keras").unlink()
    r = run_cli("distill", "--soft-labels", tmp_path / "soft.h5", "--student", "shrink:0.5", "--out",
                tmp_path / "s.keras")
    assert_one_line_error(r, 4, "one of the 2 teachers these soft labels were made with")
