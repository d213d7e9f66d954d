"""--epochs auto: a validation split carved from the training split, early stopping on it,
the best epoch's weights, provenance, and an exact resume of a stopped-and-continued run."""

import csv
import types

import numpy as np
import pytest

import kdcli
from kdcli.data import stratified_split
from kdcli.hooks import EarlyStopping, PlateauSchedule, TrainState, ValidationScores, Validator
from kdcli.options import Budget, plateau_patience

from conftest import (
    EPOCH_LINE,
    STEPS_PER_EPOCH,
    assert_one_line_error,
    assert_same_weights,
    interrupt,
    kdcli_process,
    run_cli,
    state,
    talk,
)


class Scripted(ValidationScores):
    """The validation accuracy and loss of each epoch, given in advance instead of measured."""

    def __init__(self, accuracies, losses=None):
        figures = iter(zip(accuracies, losses or [1.0] * len(accuracies)))
        self.validate = lambda: next(figures)


class Steps:
    """A progress object that counts training steps and keeps the last status."""

    def __init__(self):
        self.steps, self.logs = 0, None

    def start(self, total):
        self.total = total

    def advance(self, logs):
        self.steps += 1
        self.logs = logs

    def stop(self):
        pass


@pytest.fixture(scope="module")
def digits():
    return kdcli.load_data("digits")


def test_the_validation_split_is_stratified_reproducible_and_disjoint_from_the_test_split(digits):
    kept, held_out = stratified_split(digits.train.y, 0.1, 7)
    again, _ = stratified_split(digits.train.y, 0.1, 7)
    np.testing.assert_array_equal(kept, again)  # from the seed alone
    assert len(held_out) == pytest.approx(0.1 * len(digits.train), abs=10)
    for cls in range(10):  # every class keeps its share
        assert np.sum(digits.train.y[held_out] == cls) == round(0.1 * np.sum(digits.train.y == cls))
    validation = digits.train.take(held_out)
    assert not set(validation.rows) & set(digits.train.take(kept).rows)
    train_rows = digits.train.rows if digits.train.rows is not None else np.arange(len(digits.train))
    assert set(validation.rows) <= set(train_rows)  # training rows...
    np.testing.assert_array_equal(validation.read(np.arange(len(validation))), digits.x_train[held_out])
    # ... and training on them never happens: an epoch takes the kept rows only
    steps = Steps()
    kdcli.train(kdcli.build_model("mlp", digits, depth=0, seed=0), digits,
                Budget(epochs="auto", max_epochs=1, seed=7), progress=steps)
    assert steps.steps == -(-len(kept) // 64)


def test_the_validation_rows_are_never_test_rows(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "xy.npz", x=rng.normal(size=(300, 4)), y=np.arange(300) % 3)
    data = kdcli.load_data(tmp_path / "xy.npz")  # one array, cut into a test and a training split by rows
    _, held_out = stratified_split(data.train.y, 0.1, 0)
    validation = data.train.take(held_out)
    assert validation.x is data.test.x and len(validation) == 24
    assert set(validation.rows).isdisjoint(data.test.rows)


def test_early_stopping_stops_and_keeps_the_best_epoch(digits):
    model = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.train(model, digits, Budget(epochs="auto", patience=2, max_epochs=60, learning_rate=0.05))
    epochs = len(history["loss"])
    assert history["stopped"] == "patience" and epochs < 60
    best = history["best_epoch"]
    assert epochs - best == 2  # two epochs without a better validation accuracy
    assert len(history["val_accuracy"]) == epochs
    assert history["val_accuracy"][best - 1] == max(history["val_accuracy"])
    # the model holds the best epoch's weights: measured again, it scores exactly what that epoch did
    _, held_out = stratified_split(digits.train.y, 0.1, 0)
    accuracy, loss = Validator(model, digits.train.take(held_out))()
    assert accuracy == history["val_accuracy"][best - 1]
    assert loss == pytest.approx(history["val_loss"][best - 1], rel=1e-5)


def test_a_run_that_keeps_improving_stops_at_max_epochs(digits):
    steps = Steps()
    history = kdcli.train(kdcli.build_model("mlp", digits, depth=0, seed=0), digits,
                          Budget(epochs="auto", patience=50, max_epochs=3), progress=steps)
    assert (len(history["loss"]), history["stopped"]) == (3, "max-epochs")
    best = 2 if (history["val_accuracy"][1], -history["val_loss"][1]) > (history["val_accuracy"][0],
                                                                         -history["val_loss"][0]) else 1
    # the bar shows the epoch, the best one, the epochs since the best of the patience, and the last measured
    assert steps.logs == {"epoch": 3, "best": best, "patience": f"{2 - best}/50", "val_acc": history["val_accuracy"][1]}
    assert steps.total is None  # no count towards --max-epochs


def test_epochs_n_trains_on_the_whole_training_split_as_before(digits):
    steps = Steps()
    model = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.train(model, digits, Budget(epochs=3), progress=steps)
    assert steps.steps == 3 * -(-len(digits.train) // 64)  # every training sample, no validation share
    assert len(history["loss"]) == 3 and "val_accuracy" not in history and "stopped" not in history
    twin = kdcli.build_model("mlp", digits, depth=0, seed=0)
    kdcli.train(twin, digits, epochs=3, lr_schedule="constant")
    for a, b in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_distill_defaults_to_auto_and_records_the_stopping(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--patience", "3",
                "--max-epochs", "40", "--baseline", "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    hyper, metrics = record["hyperparameters"], record["metrics"]
    assert (hyper["epochs"], hyper["patience"], hyper["max_epochs"], hyper["validation"]) == ("auto", 3, 40, 0.1)
    assert metrics["stopped"] in ("patience", "max-epochs") and 1 <= metrics["best_epoch"] <= metrics["epochs"]
    assert len(metrics["validation_accuracy"]) == metrics["epochs"] == len(metrics["validation_loss"])
    assert metrics["baseline_epochs"] >= 1 and metrics["baseline_stopped"] in ("patience", "max-epochs")
    # The distilled student is judged by its divergence from the teacher, its scratch twin by its accuracy.
    assert (hyper["monitor"], metrics["monitor"], metrics["baseline_monitor"]) == ("auto", "kl", "accuracy")
    kl = metrics["validation_kl"]
    assert len(kl) == metrics["epochs"] and min(kl) == kl[metrics["best_epoch"] - 1]
    assert f"(best {metrics['best_epoch']} by validation kl, stopped: {metrics['stopped']})" in r.stderr
    assert f"(best {metrics['baseline_best_epoch']} by validation accuracy, " in r.stderr
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--epochs", "2",
                "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["epochs"] == 2 and "patience" not in record["hyperparameters"]
    assert record["metrics"]["epochs"] == 2 and "best_epoch" not in record["metrics"]


@pytest.mark.parametrize("value", ["soon", "0", "-3"])
def test_a_bad_epochs_value_is_a_usage_error(pipeline, tmp_path, value):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--epochs", value, "--out", tmp_path / "s.keras")
    assert r.exit_code == 2 and "--epochs must be auto or a whole number of at least 1" in r.stderr


def test_plateau_halves_the_step_size_after_a_quarter_of_the_patience_without_improvement():
    # patience 8: a decay after 2 epochs without a better validation accuracy (an equal one with the
    # same loss is not better), counted from the best epoch or the last decay, and a stop after 8
    optimizer = types.SimpleNamespace(learning_rate=0.1)
    stopping = EarlyStopping(Scripted([0.5, 0.6, 0.6, 0.6, 0.7] + [0.7] * 20), 8, 300,
                             types.SimpleNamespace(get_weights=list))
    plateau = PlateauSchedule(optimizer, 0.1, 8, stopping)
    state = TrainState(epochs=300, steps=1, samples=1)
    for epoch in state.epochs_left():
        state.begin_epoch(epoch)
        state.end_epoch((0.5, 1, {}))
        stopping.on_epoch_end(state)
        plateau.on_epoch_end(state)
        if state.stopped:
            break
    history = state.history
    assert (history["best_epoch"], history["lr_decays"], history["stopped"]) == (5, [4, 7, 9, 11], "patience")
    assert optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** 4)
    assert len(history["val_accuracy"]) == 13  # no decay at the epoch the run stops
    assert [plateau_patience(p) for p in (1, 3, 4, 7, 8, 20)] == [1, 1, 1, 2, 2, 5]  # a quarter, rounded up


@pytest.mark.slow
def test_plateau_lowers_the_optimizer_step_size_at_the_recorded_epochs(pipeline, tmp_path):
    out, logs = tmp_path / "s.keras", tmp_path / "logs"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--lr-schedule",
                "plateau", "--patience", "4", "--max-epochs", "25", "--learning-rate", "0.05", "--log-dir", logs,
                "--baseline", "--out", out)
    assert r.exit_code == 0, r.stderr
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["lr_schedule"] == "plateau"
    decays = record["metrics"]["lr_decays"]
    assert decays and all(1 <= e < record["metrics"]["epochs"] for e in decays)
    assert all(1 <= e < record["metrics"]["baseline_epochs"] for e in record["metrics"]["baseline_lr_decays"])
    with open(logs / "student" / "metrics.csv", newline="") as f:  # the rate each epoch trained with
        rates = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    assert rates == pytest.approx([0.05 * 0.5 ** sum(d < e for d in decays)
                                   for e in range(1, len(rates) + 1)], rel=1e-6)


@pytest.mark.parametrize("options, message", [
    (["--epochs", "3"], "--lr-schedule plateau lowers the step size when the validation score stalls"),
    (["--refit"], "--refit retrains with a schedule fixed in advance"),
])
def test_plateau_needs_epochs_auto_and_no_refit(pipeline, tmp_path, options, message):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--lr-schedule", "plateau", *options,
                "--out", tmp_path / "s.keras")
    assert r.exit_code == 2 and message in r.stderr
    assert not (tmp_path / "s.keras").exists()


@pytest.mark.slow
@pytest.mark.parametrize("schedule, rate, monitor", [("constant", "0.02", "auto"), ("plateau", "0.2", "accuracy")])
def test_a_stopped_and_continued_run_resumes_exactly(pipeline, tmp_path, schedule, rate, monitor):
    args = ["distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--patience", "3",
            "--max-epochs", "12", "--learning-rate", rate, "--seed", "5", "--checkpoint-every", "0",
            "--lr-schedule", schedule, "--monitor", monitor]
    reference = tmp_path / "reference.keras"
    r = kdcli_process(*args, "--out", reference)
    assert r.returncode == 0, r.stderr
    whole = kdcli.read_provenance(reference)["metrics"]
    assert whole["epochs"] > 4  # so that the run below is killed before it stops
    out = tmp_path / "student.keras"
    r = kdcli_process(*args, "--out", out, fault="checkpoint-written:4:KILL")
    assert r.returncode == -9
    saved = state(tmp_path / "student.ckpt" / "student")
    assert saved["epochs_done"] == 3 and saved["best"]  # the stopping state is in the checkpoint
    r = kdcli_process(*args, "--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, kdcli.load_model(reference).get_weights())
    resumed = kdcli.read_provenance(out)["metrics"]
    assert whole["monitor"] == ("kl" if monitor == "auto" else monitor)
    for key in ("epochs", "best_epoch", "stopped", "monitor", "validation_accuracy", "validation_kl", "lr_decays"):
        assert resumed.get(key) == whole.get(key), key
    if schedule == "plateau":  # the step size was lowered before the kill, and again after it
        assert min(whole["lr_decays"]) <= 3 < max(whole["lr_decays"])


@pytest.mark.slow
def test_refit_retrains_on_the_whole_training_split_for_the_best_epoch(pipeline, tmp_path):
    common = ["--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--seed", "4"]
    refit = tmp_path / "refit.keras"
    r = run_cli("distill", *common, "--patience", "2", "--max-epochs", "30", "--learning-rate", "0.02", "--refit",
                "--out", refit)
    assert r.exit_code == 0, r.stderr
    metrics = kdcli.read_provenance(refit)["metrics"]
    assert metrics["refit"] and metrics["epochs"] == metrics["best_epoch"] <= metrics["search_epochs"]
    assert "on the whole training split, the best of" in r.stderr
    # the same as training that many epochs from the same start with --epochs N
    fixed = tmp_path / "fixed.keras"
    r = run_cli("distill", *common, "--epochs", str(metrics["best_epoch"]), "--learning-rate", "0.02", "--out", fixed)
    assert r.exit_code == 0, r.stderr
    assert_same_weights(refit, kdcli.load_model(fixed).get_weights())
    assert not (tmp_path / "refit.ckpt").exists()  # both runs' checkpoints removed
    r = run_cli("distill", *common, "--epochs", "3", "--refit", "--out", tmp_path / "x.keras")
    assert r.exit_code == 2 and "--refit retrains for the epochs that --epochs auto finds" in r.stderr


@pytest.mark.slow
def test_without_a_terminal_each_epoch_prints_a_line_with_its_validation_accuracy(monkeypatch, tmp_path):
    import kdcli.console

    monkeypatch.setattr(kdcli.console, "LOG_EVERY", 0.0)  # as if every epoch took longer than the throttle
    r = run_cli("train-teacher", "--arch", "mlp", "--epochs", "auto", "--max-epochs", "3", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if EPOCH_LINE.fullmatch(line)]
    assert [line.split("  ")[0] for line in lines] == [f"training teacher: epoch {e}/3" for e in (1, 2, 3)]
    assert all("  val_accuracy 0." in line for line in lines)
    assert talk(r.stderr)[-1].startswith("teacher: test accuracy")  # the summary follows the epochs


@pytest.mark.slow
def test_short_epochs_print_at_most_a_line_every_few_seconds_and_quiet_none(tmp_path):
    r = run_cli("train-teacher", "--arch", "mlp", "--epochs", "4", "--out", tmp_path / "t.keras")
    lines = [line for line in r.stderr.splitlines() if EPOCH_LINE.fullmatch(line)]
    # Epochs of a fraction of a second: the first and the last epoch only, without validation.
    assert [line.split("  ")[0] for line in lines] == ["training teacher: epoch 1/4", "training teacher: epoch 4/4"]
    assert "val_accuracy" not in r.stderr
    r = run_cli("train-teacher", "--arch", "mlp", "--epochs", "2", "--out", tmp_path / "q.keras", "--quiet")
    assert r.exit_code == 0 and r.stderr == ""


def _kl_reference(teacher_logits, student_logits, temperature, standardize=False):
    """Mean KL(softmax(t/T) || softmax(s/T)) in NumPy, term by term (of standardised logits: `standardize`)."""
    def softmax(z):
        if standardize:
            z = (z - z.mean(axis=1, keepdims=True)) / (z.std(axis=1, keepdims=True) + 1e-7)
        z = z / temperature
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p, q = softmax(teacher_logits), softmax(student_logits)
    return float(np.mean(np.sum(p * np.log(p / q), axis=1)))


@pytest.mark.parametrize("monitor, temperature, standardize", [("auto", 4.0, False), ("kl", 2.0, False),
                                                                ("auto", 2.0, True)])
def test_a_distilled_student_stops_on_its_kl_to_the_teacher_and_keeps_that_best_epoch(digits, monitor, temperature,
                                                                                       standardize):
    teacher = kdcli.build_model("mlp", digits, width=32, seed=1)
    kdcli.train(teacher, digits, epochs=3)
    logits = kdcli.predict_logits(teacher, digits.train)
    student = kdcli.build_model("mlp", digits, depth=0, seed=0)
    history = kdcli.distill(student, digits, Budget(patience=2, max_epochs=30, learning_rate=0.05, monitor=monitor),
                            teacher_logits=logits, method=kdcli.make_method("kd", temperature=temperature,
                                                                            standardize=standardize))
    assert history["monitor"] == "kl" and len(history["val_kl"]) == len(history["loss"])
    best = history["best_epoch"]
    assert history["val_kl"][best - 1] == min(history["val_kl"])
    assert len(history["loss"]) - best == 2 or history["stopped"] == "max-epochs"
    # the student holds the best epoch's weights: its KL, measured again in NumPy, is that epoch's
    _, held_out = stratified_split(digits.train.y, 0.1, 0)
    again = _kl_reference(logits[held_out].astype(np.float64),
                          kdcli.predict_logits(student, digits.train.take(held_out)).astype(np.float64), temperature,
                          standardize)
    assert again == pytest.approx(history["val_kl"][best - 1], rel=1e-4)


def test_monitor_loss_keeps_the_epoch_of_the_lowest_validation_loss(digits):
    history = kdcli.train(kdcli.build_model("mlp", digits, depth=0, seed=0), digits,
                          Budget(epochs="auto", patience=2, max_epochs=30, learning_rate=0.05, monitor="loss"))
    assert history["monitor"] == "loss"
    assert history["val_loss"][history["best_epoch"] - 1] == min(history["val_loss"])


def test_a_live_teacher_gives_the_kl_its_validation_logits(digits):
    teacher = kdcli.build_model("mlp", digits, width=32, seed=1)
    kdcli.train(teacher, digits, epochs=2)
    offline = kdcli.distill(kdcli.build_model("mlp", digits, depth=0, seed=0), digits, Budget(max_epochs=3),
                            teacher_logits=kdcli.predict_logits(teacher, digits.train))
    online = kdcli.distill(kdcli.build_model("mlp", digits, depth=0, seed=0), digits, Budget(max_epochs=3),
                           teacher=teacher)
    assert online["val_kl"] == pytest.approx(offline["val_kl"], rel=1e-4)


@pytest.mark.parametrize("command, monitor, message", [
    ("distill", "val_acc", "--monitor must be one of auto, accuracy, loss, kl, got 'val_acc'"),
    ("train-teacher", "kl", "--monitor kl measures a student against its teacher"),
])
def test_a_bad_monitor_is_one_line(pipeline, tmp_path, command, monitor, message):
    source = ("--soft-labels", pipeline["soft"]) if command == "distill" else ("--data", "digits")
    r = run_cli(command, *source, "--monitor", monitor, "--out", tmp_path / "m.keras")
    assert_one_line_error(r, 2, message)
    assert not (tmp_path / "m.keras").exists()


def test_a_checkpoint_that_names_no_monitor_resumes_with_monitor_accuracy(pipeline, tmp_path):
    # A distilled run judged by accuracy records no monitor in its checkpoint, as checkpoints made before
    # --monitor did: resuming it under the default (kl) says what to add.
    args = ["distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--depth", "0", "--max-epochs", "3",
            "--checkpoint-every", "0", "--out", tmp_path / "s.keras"]
    interrupt(*args, "--monitor", "accuracy", at=STEPS_PER_EPOCH + 2)
    r = run_cli(*args, "--resume")
    assert_one_line_error(r, 4, "the checkpoint's run was judged by its validation accuracy: add --monitor accuracy")
    r = run_cli(*args, "--monitor", "accuracy", "--resume")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(tmp_path / "s.keras")["metrics"]["monitor"] == "accuracy"
