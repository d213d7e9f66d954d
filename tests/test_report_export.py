"""evaluate's outputs and gates, and export to TFLite and SavedModel."""

import json
import re

import numpy as np
import pytest

import kdcli

from conftest import assert_one_line_error, run_cli

QUICK = ("--latency-runs", "10")


@pytest.fixture(scope="module")
def exports(pipeline):
    """The session's student exported in every format."""
    d = pipeline["dir"] / "exports"
    paths = {q: d / f"student-{q}.tflite" for q in ("none", "float16", "dynamic", "int8")}
    for quantize, path in paths.items():
        r = run_cli("export", pipeline["student"], "--format", "tflite", "--quantize", quantize, "--out", path)
        assert r.exit_code == 0, r.stderr
        assert r.stdout == f"{path}\n"
    paths["saved_model"] = d / "saved"
    r = run_cli("export", pipeline["student"], "--format", "saved_model", "--out", paths["saved_model"])
    assert r.exit_code == 0, r.stderr
    return paths


def evaluate_json(*args):
    r = run_cli("evaluate", *args, "--json", "-", *QUICK)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


def test_json_schema(pipeline):
    report = evaluate_json(pipeline["teacher"], pipeline["student"])
    assert report["schema"] == "kdcli.evaluate/1"
    assert set(report["latency"]) >= {"method", "runs", "warmup", "rounds", "threads", "tensorflow", "cpu", "cpu_count"}
    assert report["latency"]["runs"] == 10
    teacher, student = report["models"]
    for m in (teacher, student):
        assert set(m) >= {"path", "format", "accuracy", "top5_accuracy", "params", "trainable_params", "size_bytes",
                          "latency_ms", "latency_p95_ms", "throughput", "agreement"}
        assert m["top5_accuracy"] >= m["accuracy"]
        assert m["trainable_params"] <= m["params"]
    assert set(student) >= {"compression", "size_ratio", "speedup", "accuracy_change_points"}
    assert student["size_ratio"] == pytest.approx(teacher["size_bytes"] / student["size_bytes"])
    assert report["gates"] == []


def test_no_top5_with_five_classes_or_fewer(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(60) % 3)
    assert run_cli("train-teacher", "--data", tmp_path / "d.npz", "--arch", "mlp", "--epochs", "1",
                   "--out", tmp_path / "t.keras").exit_code == 0
    assert "top5_accuracy" not in evaluate_json(tmp_path / "t.keras")["models"][0]


def test_markdown_and_json_files(pipeline, tmp_path):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--markdown", tmp_path / "r.md",
                "--json", tmp_path / "r.json", "--min-accuracy", "0.0", *QUICK)
    assert r.exit_code == 0, r.stderr
    md = (tmp_path / "r.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("### digits: 359 test samples")
    assert lines[2].startswith("| model | method | epochs | accuracy | top-5 | params |")
    assert lines[4].startswith(f"| {pipeline['teacher']} |") and lines[5].startswith(f"| {pipeline['student']} |")
    assert "_latency: 10 single-sample calls after 20 warm-up calls, in 5 rounds" in md
    assert f"- `{pipeline['student']}`: accuracy ≥ 0.0: passed" in md
    assert len(json.loads((tmp_path / "r.json").read_text())["gates"]) == 2
    assert "smaller" in r.stdout  # the table still goes to stdout
    # Each file written is named on stderr (the table on stdout stays what a pipe reads).
    assert f"wrote {tmp_path / 'r.json'}" in r.stderr and f"wrote {tmp_path / 'r.md'}" in r.stderr


def test_min_accuracy_gate(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--min-accuracy", "0.999", "--json", "-", *QUICK)
    assert r.exit_code == 3
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: gate failed: ") for e in errors)
    assert f"{pipeline['student']}: accuracy" in errors[1] and "is below --min-accuracy 0.999" in errors[1]
    gates = json.loads(r.stdout)["gates"]
    assert [(g["gate"], g["passed"]) for g in gates] == [("min_accuracy", False), ("min_accuracy", False)]
    assert run_cli("evaluate", pipeline["teacher"], "--min-accuracy", "0.3", *QUICK).exit_code == 0


@pytest.mark.slow
def test_max_accuracy_drop_gate(pipeline):
    report = evaluate_json(pipeline["teacher"], pipeline["student"])
    drop = -report["models"][1]["accuracy_change_points"]
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--max-accuracy-drop", str(max(drop, 0) + 0.5), *QUICK)
    assert r.exit_code == 0, r.stderr
    # the student distilled for 3 epochs loses accuracy against its teacher
    assert drop > 0.5
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--max-accuracy-drop", "0.1", "--json", "-", *QUICK)
    assert r.exit_code == 3
    assert r.stderr.strip().splitlines() == [
        f"error: gate failed: {pipeline['student']}: accuracy dropped {drop:.2f} points from the first model, "
        "more than --max-accuracy-drop 0.1"
    ]
    (gate,) = json.loads(r.stdout)["gates"]
    assert gate == {"model": str(pipeline["student"]), "gate": "max_accuracy_drop", "threshold": 0.1,
                    "value": pytest.approx(drop), "passed": False}


def test_min_accuracy_is_a_fraction(pipeline):
    assert run_cli("evaluate", pipeline["teacher"], "--min-accuracy", "90").exit_code == 2


def test_plot(pipeline, tmp_path):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--plot", tmp_path / "p.png", *QUICK)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {tmp_path / 'p.png'}" in r.stderr


@pytest.mark.slow
def test_tflite_exports_evaluate_beside_keras(pipeline, exports):
    report = evaluate_json(pipeline["teacher"], pipeline["student"], exports["none"], exports["int8"])
    teacher, student, flt, int8 = report["models"]
    assert flt["format"] == int8["format"] == "tflite"
    assert flt["accuracy"] == pytest.approx(student["accuracy"], abs=0.003)
    assert abs(int8["accuracy"] - student["accuracy"]) <= 0.02
    assert int8["size_bytes"] <= student["size_bytes"] / 3
    assert int8["params"] == student["params"]  # from the export's provenance
    assert abs(int8["agreement"] - student["agreement"]) <= 0.03  # agreement is with the first model


@pytest.mark.parametrize("quantize", ["none", "float16", "dynamic", "int8"])
def test_each_tflite_quantization(pipeline, exports, quantize):
    path = exports[quantize]
    record = kdcli.read_provenance(path)
    assert record["kind"] == "export" and record["quantize"] == quantize
    from kdcli.files import sha256_file

    assert record["source_sha256"] == sha256_file(pipeline["student"])
    from kdcli.tflite import TFLiteRunner

    runner = TFLiteRunner(path)
    data = kdcli.load_data("digits")
    keras_logits = kdcli.predict_logits(kdcli.load_model(pipeline["student"]), data.test)
    tflite_logits = runner.predict(data.test, 64)
    agreement = np.mean(np.argmax(keras_logits, -1) == np.argmax(tflite_logits, -1))
    assert agreement >= (0.99 if quantize in ("none", "float16") else 0.9)
    if quantize == "int8":  # checked on the calibration samples before the file was written
        assert 0.9 <= record["agreement"] <= 1
    else:
        assert "agreement" not in record


def test_int8_export_says_how_well_it_agrees(pipeline, tmp_path):
    r = run_cli("export", pipeline["student"], "--quantize", "int8", "--out", tmp_path / "s.tflite")
    assert r.exit_code == 0, r.stderr
    agreement = kdcli.read_provenance(tmp_path / "s.tflite")["agreement"]
    assert f"gives {pipeline['student'].name}'s class on {agreement:.1%} of its calibration samples" in r.stderr


def _features(folder, x, y):
    np.savez(folder / "features.npz", x=x.astype(np.float32), y=y)
    return folder / "features.npz"


@pytest.fixture(scope="module")
def wide_features(tmp_path_factory):
    """A classifier of features on very different scales (a count in the tens of thousands beside
    fractions): the class hangs on the small ones, which one int8 input scale rounds away."""
    d = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(50_000, 15_000, 600), rng.random(600), rng.random(600)], axis=1)
    data = _features(d, x, (x[:, 1] > x[:, 2]).astype(np.int64))
    r = run_cli("train-teacher", "--data", data, "--arch", "mlp", "--epochs", "10", "--out", d / "m.keras")
    assert r.exit_code == 0, r.stderr
    return d


def test_an_int8_export_that_loses_its_inputs_is_refused(wide_features, tmp_path):
    d = wide_features
    before = sorted(d.iterdir())
    out = tmp_path / "new" / "folder" / "m.tflite"
    r = run_cli("export", d / "m.keras", "--quantize", "int8", "--data", d / "features.npz", "--out", out)
    assert_one_line_error(r, 4, "the int8 model gives m.keras's class on ")
    assert re.search(r"of its 300 calibration samples \(\d+%; 270 needed\)", r.stderr), r.stderr
    assert "which leaves 2 of its 3 input features fewer than 10 steps" in r.stderr
    assert "scale the features in the data and train again" in r.stderr and "--quantize dynamic" in r.stderr
    assert sorted(d.iterdir()) == before and list(tmp_path.iterdir()) == []  # no file, no new folder
    # dynamic quantization keeps float activations, and the inputs with them
    r = run_cli("export", d / "m.keras", "--quantize", "dynamic", "--out", tmp_path / "m.tflite")
    assert r.exit_code == 0, r.stderr
    report = evaluate_json(d / "m.keras", tmp_path / "m.tflite", "--data", d / "features.npz")
    assert report["models"][1]["agreement"] >= 0.97


def test_min_agreement_0_keeps_an_int8_export_whatever_it_agrees(wide_features, tmp_path):
    r = run_cli("export", wide_features / "m.keras", "--quantize", "int8", "--data", wide_features / "features.npz",
                "--out", tmp_path / "m.tflite", "--min-agreement", "0")
    assert r.exit_code == 0, r.stderr
    agreement = kdcli.read_provenance(tmp_path / "m.tflite")["agreement"]
    assert agreement < 0.9 and f"class on {agreement:.1%} of its calibration samples" in r.stderr
    report = evaluate_json(wide_features / "m.keras", tmp_path / "m.tflite", "--data", wide_features / "features.npz")
    assert report["models"][1]["agreement"] < 0.9  # what the check measured, the file does


def _hand_made(folder, kernel, x, y):
    """A `Dense` softmax classifier with the given weights (no bias), saved beside its data."""
    from kdcli._tf import keras

    model = keras.Sequential([keras.Input((kernel.shape[0],)), keras.layers.Dense(kernel.shape[1], "softmax")])
    model.layers[0].set_weights([kernel.astype(np.float32), np.zeros(kernel.shape[1], np.float32)])
    model.save(folder / "m.keras")
    return folder / "m.keras", kdcli.load_data(str(_features(folder, x, y)))


def test_an_int8_output_tied_where_the_model_is_sure_disagrees(tmp_path):
    from kdcli.errors import KdcliError
    from kdcli.export import export_model

    # sure of x1 > x2, but the int8 input, in steps of a few hundred, keeps neither: a flat [0.5, 0.5]
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(50_000, 15_000, 400), rng.random(400), rng.random(400)], axis=1)
    model, data = _hand_made(tmp_path, np.array([[0, 0], [50, -50], [-50, 50]]), x, (x[:, 2] > x[:, 1]).astype(int))
    with pytest.raises(KdcliError, match="m.keras's class on"):
        export_model(model, tmp_path / "m.tflite", quantize="int8", data=data)
    kept = export_model(model, tmp_path / "m.tflite", quantize="int8", data=data, min_agreement=0)
    # where the model is sure, a tie is no answer, whichever tied class comes first
    assert kdcli.read_provenance(kept)["agreement"] < 0.05


def test_an_int8_output_tied_where_the_model_is_unsure_agrees(tmp_path):
    from kdcli.export import export_model

    # barely trained: every class within a step of the output (1/256) of the others
    rng = np.random.default_rng(0)
    x = rng.random((400, 8))
    model, data = _hand_made(tmp_path, rng.normal(0, 1e-4, (8, 3)), x, np.arange(400) % 3)
    out = export_model(model, tmp_path / "m.tflite", quantize="int8", data=data)
    assert kdcli.read_provenance(out)["agreement"] == 1.0


def test_float16_is_smaller_than_float32(exports):
    assert exports["float16"].stat().st_size < exports["none"].stat().st_size


def test_saved_model(pipeline, exports):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exports["saved_model"]))
    data = kdcli.load_data("digits")
    x = data.x_test[:16].astype(np.float32)
    np.testing.assert_allclose(loaded.serve(x).numpy(), kdcli.load_model(pipeline["student"])(x).numpy(), atol=1e-5)
    assert kdcli.read_provenance(exports["saved_model"])["format"] == "saved_model"
    r = run_cli("info", exports["saved_model"])
    assert r.exit_code == 0 and json.loads(r.stdout)["kind"] == "export"


def test_saved_model_in_folders_to_make(pipeline, tmp_path):
    out = tmp_path / "serve" / "student" / "1"
    r = run_cli("export", pipeline["student"], "--format", "saved_model", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert (out / "saved_model.pb").is_file() and sorted(p.name for p in out.parent.iterdir()) == ["1"]


def test_export_bad_input(pipeline, tmp_path):
    r = run_cli("export", pipeline["student"], "--quantize", "int4", "--out", tmp_path / "x.tflite")
    assert r.exit_code == 2 and "int4" in r.stderr  # a usage error
    r = run_cli("export", pipeline["student"], "--out", tmp_path / "x.onnx")
    assert_one_line_error(r, 4, "give a path ending in .tflite")
    r = run_cli("export", tmp_path / "missing.keras")
    assert_one_line_error(r, 4, "no such model file")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("a file, not a folder")
    for format, out in (("tflite", "x.tflite"), ("saved_model", "x")):
        r = run_cli("export", pipeline["student"], "--format", format, "--out", tmp_path / "file" / out)
        assert_one_line_error(r, 4, f"{tmp_path / 'file'} is a file, not a folder")


def test_a_loss_to_scratch_is_said_with_what_to_try_in_distill_and_evaluate(tmp_path):
    # An untrained teacher, distilled with alpha 1 (its probabilities alone): the student learns nothing.
    import keras

    inputs = keras.Input((8, 8))
    untrained = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    untrained.save(tmp_path / "untrained.keras")
    student = tmp_path / "s.keras"
    r = run_cli("distill", "--teacher", tmp_path / "untrained.keras", "--data", "digits", "--student", "mlp",
                "--method", "kd:alpha=1", "--epochs", "3", "--baseline", "--out", student)
    assert r.exit_code == 0, r.stderr
    summary = " ".join(r.stderr.split())
    assert "distillation lost" in summary and "(one seed: --seeds 3 tells a loss from noise); try --tune 8" in summary
    r = run_cli("evaluate", student, "--json", tmp_path / "e.json", *QUICK)
    assert r.exit_code == 0, r.stderr
    assert f"{student}: distillation lost" in " ".join(r.stdout.split())
    assert json.loads((tmp_path / "e.json").read_text())["models"][0]["distillation_gain_points"] < -20
