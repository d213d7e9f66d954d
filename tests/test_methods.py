"""Distillation methods as objects: the registry, the CLI's --method, every teacher mode, resume, baseline."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import kdcli
from kdcli import methods
from kdcli.losses import dkd_terms_per_sample
from kdcli.methods import REGISTRY, make_method, parse_method
from kdcli.training import distill

from conftest import STEPS_PER_EPOCH, assert_one_line_error, assert_same_weights, interrupt_and_resume, run_cli

METHOD_ARGS = {
    "kd": [],
    "kd+ls": ["--method", "kd:standardize=true,temperature=2"],
    "dkd": ["--method", "dkd:warmup=2"],
    "dkd+ls": ["--method", "dkd:standardize=true,beta=2"],
    "dist": ["--method", "dist:beta=2"],
}


def teacher_modes(pipeline):
    """Where the teacher's logits come from: a soft-label file, the teacher run once, online, with shifts."""
    return {
        "soft-labels": ["--soft-labels", pipeline["soft"]],
        "teacher once": ["--teacher", pipeline["teacher"]],
        "online": ["--teacher", pipeline["teacher"], "--online"],
        "augment": ["--teacher", pipeline["teacher"], "--augment", "shift"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHOD_ARGS))
def test_every_method_runs_from_every_teacher_mode(pipeline, tmp_path, method):
    for mode, source in teacher_modes(pipeline).items():
        out = tmp_path / f"{mode.replace(' ', '-')}.keras"
        r = run_cli("distill", *source, *METHOD_ARGS[method], "--student", "mlp", "--width", "16", "--epochs", "2",
                    "--out", out, *(["--baseline"] if mode == "soft-labels" else []))
        assert r.exit_code == 0, (mode, r.stderr)
        record = kdcli.read_provenance(out)
        name = method.split("+")[0]
        assert record["hyperparameters"]["method"]["name"] == name
        assert record["hyperparameters"]["method"].get("standardize", False) == method.endswith("+ls")
        assert np.isfinite(kdcli.load_model(out).get_weights()[0]).all()
        assert record["hyperparameters"]["mode"] == {"soft-labels": "soft-labels", "teacher once": "teacher-logits-once"
                                                     }.get(mode, "online")
    assert "baseline_test_accuracy" in kdcli.read_provenance(tmp_path / "soft-labels.keras")["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("name, params", [("kd", {}), ("kd", {"standardize": True, "temperature": 2.0}),
                                          ("dkd", {"warmup": 2}), ("dkd", {"standardize": True, "warmup": 2}),
                                          ("dist", {})])
def test_every_method_learns(pipeline, name, params):
    from kdcli.inference import accuracy

    data = kdcli.load_data("digits")
    student = kdcli.build_model("mlp", data, width=16, role="student", seed=0)
    history = distill(student, data, teacher_logits=kdcli.read_soft_labels(pipeline["soft"]).column,
                      method=make_method(name, **params), epochs=4)
    assert history["accuracy"][-1] > history["accuracy"][0]
    assert accuracy(student, data.test) > 0.2  # 4 epochs of a 1,226-parameter student; chance is 0.1


@pytest.mark.slow
def test_info_and_evaluate_show_the_method(pipeline, tmp_path):
    out = tmp_path / "dkd.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--method", "dkd:standardize=true",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    info = json.loads(run_cli("info", out).stdout)
    assert info["hyperparameters"]["method"] == {"name": "dkd", "temperature": 4.0, "alpha": 1.0, "beta": 8.0,
                                                 "warmup": 20, "standardize": True}
    r = run_cli("evaluate", pipeline["teacher"], out, "--latency-runs", "10", "--json", "-")
    models = json.loads(r.stdout)["models"]
    assert models[0]["method"] is None and models[1]["method"]["name"] == "dkd"
    r = run_cli("evaluate", pipeline["teacher"], out, "--latency-runs", "10")
    assert "method" in r.stdout and "dkd+ls" in r.stdout
    tflite = tmp_path / "dkd.tflite"  # an export keeps its student's method
    assert run_cli("export", out, "--out", tflite).exit_code == 0
    r = run_cli("evaluate", pipeline["teacher"], tflite, "--latency-runs", "10", "--json", "-")
    assert json.loads(r.stdout)["models"][1]["method"]["name"] == "dkd"


@pytest.mark.parametrize("args, contains", [
    (["--method", "kd:beta=2"], "--method kd has no parameter 'beta'; it has temperature, alpha, standardize"),
    (["--method", "dist:standardize=true"], "--method dist has no parameter 'standardize'"),
    (["--method", "dkd:temperature=0"], "--method dkd:temperature must be a positive number, got 0"),
    (["--method", "dkd:beta=inf"], "--method dkd:beta must be a number of 0 or more, got inf"),
    (["--method", "dist:gamma=-1"], "--method dist:gamma must be a number of 0 or more, got -1"),
    (["--method", "kd:alpha=1.5"], "--method kd:alpha must be between 0 and 1, got 1.5"),
    (["--method", "dkd:warmup=1.5"], "--method dkd:warmup must be a whole number, got '1.5'"),
    (["--method", "kd:standardize=maybe"], "--method kd:standardize must be true or false, got 'maybe'"),
    (["--method", "dkd:beta"], "give the parameters as key=value pairs"),
    (["--method", "fitnet"], "'fitnet'"),
    (["--method", "hard"], "'hard': unknown method; give one of kd, dkd, dist, hints"),
    # Each parameter that was an option of its own gets the line naming its spelling in --method.
    (["--dkd-beta", "2"], "--dkd-beta is a method parameter: give it in --method, as --method dkd:beta=B"),
    (["--temperature=2"], "--temperature is a method parameter: give it in --method, as --method kd:temperature=T"),
    (["--standardize-logits"], "as --method kd:standardize=true"),
])
def test_method_options_are_checked_before_any_work(pipeline, tmp_path, args, contains):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], *args, "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, contains)
    assert list(tmp_path.iterdir()) == []


def test_methods_are_found_by_name_with_their_defaults():
    assert set(REGISTRY) == {"hard", "kd", "dkd", "dist", "hints"}
    assert methods.distill_methods() == ("kd", "dkd", "dist", "hints")
    assert make_method("kd").config() == {"name": "kd", "temperature": 4.0, "alpha": 0.9, "standardize": False}
    assert make_method("dkd").config() == {"name": "dkd", "temperature": 4.0, "alpha": 1.0, "beta": 8.0,
                                           "warmup": 20, "standardize": False}
    assert make_method("dist").config() == {"name": "dist", "temperature": 1.0, "beta": 1.0, "gamma": 1.0}
    assert parse_method("dkd:alpha=2,warmup=3") == make_method("dkd", alpha=2.0, warmup=3)
    assert parse_method("hints:hint-weight=0.5, student_layer=dense") == \
        make_method("hints", hint_weight=0.5, student_layer="dense")
    assert parse_method("kd") == make_method("kd")
    with pytest.raises(kdcli.KdcliError, match="has no parameter gamma"):
        make_method("kd", gamma=1.0)


def test_dkd_warms_up_over_its_warmup_epochs():
    from kdcli._tf import tf

    y = np.array([0, 1])
    s = np.array([[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]], np.float32)
    t = np.array([[3.0, 1.0, 0.0], [0.0, 4.0, 1.0]], np.float32)
    method = make_method("dkd", warmup=4)
    ce, kd = dkd_terms_per_sample(y, s, t, 4.0, 1.0, 8.0)
    for epoch, weight in ((1, 0.25), (2, 0.5), (4, 1.0), (9, 1.0)):
        per_sample, batch_term = method.loss(y, s, t, tf.constant(float(epoch)))
        np.testing.assert_allclose(per_sample.numpy(), (ce + weight * kd).numpy(), rtol=1e-6)
        assert batch_term is None
    no_warmup = make_method("dkd", warmup=0).loss(y, s, t, tf.constant(1.0))[0]
    np.testing.assert_allclose(no_warmup.numpy(), (ce + kd).numpy(), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dkd", "dist"])
def test_resume_continues_every_method_exactly(pipeline, tmp_path, method):
    args = ["distill", "--soft-labels", pipeline["soft"], "--method", "dkd:warmup=3" if method == "dkd" else method,
            "--student", "mlp", "--width", "16", "--epochs", "3", "--seed", "4", "--checkpoint-every", "0"]
    r = run_cli(*args, "--out", tmp_path / "whole.keras")
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "resumed.keras"
    r = interrupt_and_resume(*args, "--out", out, at=STEPS_PER_EPOCH + 3)
    assert "1 of 3 epochs done" in r.stderr
    assert_same_weights(out, kdcli.load_model(tmp_path / "whole.keras").get_weights())


def test_adding_a_method_takes_one_module_and_one_registry_line(pipeline, tmp_path, monkeypatch):
    """A method written from scratch (mean squared error between logits), registered by one line,
    trains through the one loop, with its config in the checkpoint and the provenance."""
    (tmp_path / "l2_method.py").write_text(
        "import dataclasses\n"
        "from kdcli.methods.base import Method, param\n\n\n"
        "@dataclasses.dataclass(frozen=True)\n"
        "class L2(Method):\n"
        "    name = 'l2'\n"
        "    weight: float = param(1.0, 'weight of the squared logit distance')\n\n"
        "    def loss(self, labels, student_logits, teacher_logits, epoch):\n"
        "        import tensorflow as tf\n"
        "        return self.weight * tf.reduce_mean(tf.square(student_logits - teacher_logits), -1), None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, "l2", "l2_method:L2")  # the one registry line
    assert "l2" in methods.distill_methods()
    # Its parameters reach the command line with no edit there: `--method l2:weight=0.5`, and the help.
    assert parse_method("l2:weight=0.5") == make_method("l2", weight=0.5)
    assert "l2: weight=1" in methods.method_help()
    data = kdcli.load_data("digits")
    soft = kdcli.read_soft_labels(pipeline["soft"])
    student = kdcli.build_model("mlp", data, width=16, role="student", seed=0)
    history = distill(student, data, teacher_logits=soft.column, method=make_method("l2", weight=0.5), epochs=2,
                      checkpoint_dir=tmp_path / "ckpt")
    assert history["loss"][1] < history["loss"][0]
    state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert state["config"]["method"] == {"name": "l2", "weight": 0.5}


@pytest.mark.slow
def test_dist_under_a_mirrored_strategy_weighs_its_batch_term_by_the_replicas_shares(pipeline, tmp_path):
    """DIST's correlations are per-replica statistics: over 2 replicas it trains, close to one device."""
    outs = {}
    for strategy, env in (("default", {}), ("mirrored", {"KDCLI_CPU_DEVICES": "2"})):
        outs[strategy] = tmp_path / f"{strategy}.keras"
        r = subprocess.run(
            [sys.executable, "-m", "kdcli", "distill", "--soft-labels", str(pipeline["soft"]), "--method", "dist",
             "--student", "mlp", "--epochs", "3", "--seed", "2", "--strategy", strategy,
             "--batch-size", "64" if strategy == "default" else "32", "--out", str(outs[strategy])],
            capture_output=True, text=True, timeout=300, env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
    a, b = (kdcli.read_provenance(p) for p in outs.values())
    assert b["hyperparameters"]["replicas"] == 2
    assert abs(a["metrics"]["test_accuracy"] - b["metrics"]["test_accuracy"]) <= 0.05


SPY_METHOD = (
    "import dataclasses\n"
    "import tensorflow as tf\n"
    "from kdcli.methods.base import Method, param\n\n\n"
    "@dataclasses.dataclass(frozen=True)\n"
    "class {name}(Method):\n"
    "    name = '{key}'\n"
    "{body}"
)


def _register(tmp_path, monkeypatch, key, name, body):
    (tmp_path / f"{key}_method.py").write_text(SPY_METHOD.format(name=name, key=key, body=body))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(REGISTRY, key, f"{key}_method:{name}")
    return make_method(key)


def test_the_loop_gives_methods_the_1_based_epoch(pipeline, tmp_path, monkeypatch):
    """A method whose loss is the epoch number it is given: the epochs' mean losses are 1, 2, 3."""
    method = _register(tmp_path, monkeypatch, "epochspy", "EpochSpy", (
        "    def loss(self, labels, student_logits, teacher_logits, epoch):\n"
        "        return epoch + 0.0 * tf.reduce_mean(student_logits, -1), None\n"))
    data = kdcli.load_data("digits")
    student = kdcli.build_model("mlp", data, width=8, role="student", seed=0)
    history = distill(student, data, teacher_logits=kdcli.read_soft_labels(pipeline["soft"]).column, method=method,
                      epochs=3)
    np.testing.assert_allclose(history["loss"], [1.0, 2.0, 3.0], rtol=1e-6)


LEARNED_SCALE = (
    "    def build(self, student, teacher=None):\n"
    "        self.keep(_scale=tf.Variable(1.0, name='scale'))\n\n"
    "    @property\n"
    "    def variables(self):\n"
    "        return [self._scale]\n\n"
    "    def loss(self, labels, student_logits, teacher_logits, epoch):\n"
    "        s = tf.nn.log_softmax(student_logits * self._scale)\n"
    "        t = tf.nn.softmax(teacher_logits)\n"
    "        return -tf.reduce_sum(t * s, -1), None\n"
)


@pytest.mark.slow
def test_a_methods_own_variables_are_trained_and_checkpointed_but_not_saved(pipeline, tmp_path, monkeypatch):
    """A method that learns a scale of the student's logits: the optimizer trains it, --resume restores it
    (a run interrupted after epoch 1 ends like an uninterrupted one), and the student leaves it out."""
    data = kdcli.load_data("digits")
    logits = kdcli.read_soft_labels(pipeline["soft"]).column

    def run(epochs, checkpoint_dir=None, resume=False):
        method = _register(tmp_path, monkeypatch, "scaled", "LearnedScale", LEARNED_SCALE)
        student = kdcli.build_model("mlp", data, width=8, role="student", seed=0)
        distill(student, data, teacher_logits=logits, method=method, epochs=epochs, checkpoint_dir=checkpoint_dir,
                resume=resume)
        return student, float(method.variables[0].numpy())

    whole, whole_scale = run(2)
    assert whole_scale != 1.0  # trained
    run(1, tmp_path / "ck")
    resumed, resumed_scale = run(2, tmp_path / "ck", resume=True)
    assert resumed_scale == pytest.approx(whole_scale, abs=1e-6)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    kdcli.save_model(resumed, tmp_path / "s.keras")
    assert len(kdcli.load_model(tmp_path / "s.keras").weights) == len(resumed.weights)  # no scale in the student
