"""Run options: a run's budget and runtime as frozen dataclasses, each rule checked once, before any work."""

import dataclasses
import sys

import pytest

import kdcli
from kdcli.options import Budget, Runtime

from conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize("fields, message", [
    ({"epochs": 0}, "--epochs must be auto or a whole number of at least 1, got 0"),
    ({"batch_size": 0}, "--batch-size must be a whole number of at least 1, got 0"),
    ({"learning_rate": -1e-3}, "--learning-rate must be a positive number, got -0.001"),
    ({"learning_rate": float("inf")}, "--learning-rate must be a positive number, got inf"),
    ({"epochs": True}, "--epochs must be auto or a whole number of at least 1, got True"),
    ({"lr_schedule": "step"}, "--lr-schedule must be one of cosine, constant, plateau, got 'step'"),
    ({"lr_schedule": "plateau", "epochs": 5}, "--lr-schedule plateau lowers the step size when the validation score "
                                              "stalls: give --epochs auto"),
    ({"lr_schedule": "plateau", "refit": True}, "--refit retrains with a schedule fixed in advance: give "
                                                "--lr-schedule constant or cosine with it"),
    ({"seed": -1}, "--seed must be a whole number from 0 to 2**32 - 1, got -1"),
    ({"augment": "rotate"}, "--augment must be auto, none, shift, mixup, shift+mixup, with shift:N for N pixels, got 'rotate'"),
])
def test_a_budget_refuses_bad_values_naming_the_option(fields, message):
    with pytest.raises(kdcli.UsageError) as e:
        Budget(**fields)
    assert str(e.value) == message and e.value.exit_code == 2


def test_a_runtime_refuses_bad_values_naming_the_option():
    with pytest.raises(kdcli.UsageError, match="--strategy must be one of auto, default, mirrored, multi-worker"):
        Runtime(strategy="tpu")
    with pytest.raises(kdcli.UsageError, match="--mixed-precision must be one of off, bf16"):
        Runtime(mixed_precision="fp8")
    assert Runtime().checkpoints_for("runs/student.keras").as_posix() == "runs/student.ckpt"
    assert Runtime(checkpoint_dir="ck").checkpoints_for("runs/student.keras").as_posix() == "ck"


def test_runs_are_frozen_and_recorded_as_given():
    budget = Budget(epochs=3, seed=7)
    with pytest.raises(dataclasses.FrozenInstanceError):
        budget.epochs = 4
    assert budget.record() == {"epochs": 3, "batch_size": 64, "learning_rate": 1e-3, "lr_schedule": "constant",
                               "seed": 7, "augment": "none"}
    assert Runtime(strategy="mirrored").record() == {"strategy": "mirrored", "mixed_precision": "off"}


def test_the_python_api_takes_a_budget_or_its_fields(pipeline):
    data = kdcli.load_data("digits")
    a, b = (kdcli.build_model("mlp", data, width=8, role="student", seed=1) for _ in range(2))
    kdcli.train(a, data, Budget(epochs=1, seed=2))
    kdcli.train(b, data, epochs=1, seed=2)
    for x, y in zip(a.get_weights(), b.get_weights()):
        assert (x == y).all()
    with pytest.raises(TypeError, match="not both"):
        kdcli.train(a, data, Budget(epochs=1), seed=2)
    with pytest.raises(kdcli.UsageError, match="--epochs"):
        kdcli.train(a, data, epochs=0)


@pytest.mark.slow
def test_provenance_is_written_from_the_run(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--epochs", "1", "--seed", "5", "--batch-size", "32",
                "--out", out)
    assert r.exit_code == 0, r.stderr
    hyper = kdcli.read_provenance(out)["hyperparameters"]
    budget = Budget(epochs=1, seed=5, batch_size=32).record()
    assert {k: hyper[k] for k in budget} == budget and "patience" not in hyper  # no stopping rule with --epochs N
    assert {k: hyper[k] for k in ("strategy", "mixed_precision")} == Runtime().record()


def test_bad_run_options_exit_2_before_tensorflow_is_imported(pipeline, tmp_path):
    import subprocess

    code = ("import sys\nfrom kdcli.cli import app\ntry:\n    app(sys.argv[1:], prog_name='kdcli')\n"
            "except SystemExit as e:\n    print(e.code, 'tensorflow' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code, "distill", "--soft-labels", str(pipeline["soft"]),
                        "--batch-size", "0"], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["2", "False"], r.stderr
    assert_one_line_error(run_cli("train-teacher", "--epochs", "0"), 2, "--epochs must be auto or a whole number")
