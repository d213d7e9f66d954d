"""dry_run=True in the pipeline's steps: everything is checked and resolved as for a run, the plan names
the data, teachers, model, method, budget, runs and outputs, and nothing is trained, run or written."""

import keras
import pytest

from kdcli import pipeline
from kdcli.data import load_data, stratified_split
from kdcli.errors import UsageError
from kdcli.models import count_params
from kdcli.options import Budget, Runtime


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """A trained logits teacher, its soft labels, and an untrained teacher ending in a softmax."""
    d = tmp_path_factory.mktemp("dry-run-teachers")
    paths = {"logits": d / "teacher.keras", "soft": d / "soft.h5", "softmax": d / "softmax.keras"}
    pipeline.train_teacher("digits", paths["logits"], "mlp", width=32, budget=Budget(epochs=1))
    pipeline.make_soft_labels(paths["logits"], "digits", paths["soft"])
    softmax = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(32, "relu"),
                                keras.layers.Dense(10, "softmax")])
    softmax.save(paths["softmax"])
    return paths


@pytest.fixture
def nothing_runs(monkeypatch):
    """Training, and any teacher run over the data, fail the test."""
    import kdcli.ensembles
    import kdcli.inference
    import kdcli.training

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run trained a model or ran a teacher over the data")

    for name in ("train", "distill"):
        monkeypatch.setattr(kdcli.training, name, refuse)
    monkeypatch.setattr(kdcli.inference.Inference, "batches", refuse)  # every pass of a model over data
    monkeypatch.setattr(kdcli.ensembles, "ensemble_accuracies", refuse)


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def held_out(budget):
    digits = load_data("digits")
    return len(stratified_split(digits.train.y, budget.validation, budget.seed)[1])


def assert_names_the_data(text, validation=None):
    assert "data: digits: 1,438 training samples, 359 test samples, 10 classes" in text
    if validation is None:
        assert "held out" not in text
    else:
        assert f"validation: {validation:,} of the 1,438 training samples held out by --epochs auto" in text
        assert f"trained on {1438 - validation:,}" in text


def test_train_teacher_dry_run_plans_and_writes_nothing(tmp_path, nothing_runs):
    budget = Budget(epochs="auto", patience=3, max_epochs=7, batch_size=32, learning_rate=0.002,
                    lr_schedule="cosine", seed=5, augment="auto")
    before = listing(tmp_path)
    path, plan = pipeline.train_teacher("digits", tmp_path / "out" / "t.keras", "cnn", width=8, budget=budget,
                                        runtime=Runtime(log_dir=tmp_path / "logs"), dry_run=True)
    assert path is None and listing(tmp_path) == before
    text = str(plan)
    assert text == "\n".join(plan.lines()) and text.startswith("train-teacher, a dry run")
    assert_names_the_data(text, held_out(budget))
    assert f"teacher: cnn, width 8, {count_params(plan.model)[0]:,} parameters, head logits" in text
    assert "method: hard labels" in text
    assert ("budget: epochs auto (monitor accuracy, patience 3, at most 7 epochs), batch size 32, learning rate 0.002, "
            "schedule cosine, seed 5, augment shift:1") in text
    assert f"1. teacher, seed 5: checkpoints in {tmp_path / 'out' / 't.ckpt'}, logs in {tmp_path / 'logs'}" in text
    assert f"teacher: {tmp_path / 'out' / 't.keras'}" in text and f"logs: {tmp_path / 'logs'}" in text


def test_soft_labels_dry_run_plans_an_ensemble_and_writes_nothing(teachers, tmp_path, nothing_runs):
    before = listing(tmp_path)
    out = tmp_path / "soft.h5"
    path, plan = pipeline.make_soft_labels([teachers["logits"], teachers["softmax"]], "digits", out, dtype="float16",
                                           top_k=3, shard=(1, 2), dry_run=True)
    assert path is None and listing(tmp_path) == before
    text = str(plan)
    assert text.startswith("soft-labels, a dry run")
    assert_names_the_data(text)
    assert "teachers: an ensemble of 2" in text
    assert f"{teachers['logits']} (keras, head logits, sha256 " in text
    assert f"{teachers['softmax']} (keras, head softmax, sha256 " in text
    assert "rows 768 to 1,438 of 1,438 (shard 2/2) of the training split x the top 3 of 10, float16" in text
    assert f"soft labels: {out}" in text
    with pytest.raises(UsageError, match="--top-k must be between 1 and 9"):  # as writing would refuse it
        pipeline.make_soft_labels(teachers["logits"], "digits", out, top_k=10, dry_run=True)
    assert listing(tmp_path) == before


def test_distill_dry_run_plans_the_seeds_and_their_twins_and_writes_nothing(teachers, tmp_path, nothing_runs):
    budget = Budget(batch_size=16, seed=3, patience=4, max_epochs=9)
    out = tmp_path / "s.keras"
    before = listing(tmp_path)
    path, plan = pipeline.distill_student(
        "digits", out, teacher=teachers["softmax"], method="dkd", budget=budget, baseline=True, seeds=2,
        runtime=Runtime(log_dir=tmp_path / "logs"), dry_run=True)
    assert path is None and listing(tmp_path) == before
    text = str(plan)
    assert text.startswith("distill, a dry run")
    assert_names_the_data(text, held_out(budget))
    assert f"teacher: {teachers['softmax']} (keras, head softmax, sha256 " in text
    assert "teacher logits: computed once for the training split, in memory" in text
    assert f"student: shrink:0.25, {count_params(plan.model)[0]:,} parameters; saved with a softmax head" in text
    config = plan.request.method.config()
    assert "method: dkd: " + ", ".join(f"{k}={v}" for k, v in config.items() if k != "name") in text
    assert ("budget: epochs auto (monitor kl, accuracy from scratch, patience 4, at most 9 epochs), batch size 16, learning rate 0.001, "
            "schedule constant, seed 3, augment none") in text
    assert [(run.role, run.seed) for run in plan.runs] == [("distilled", 3), ("scratch", 3), ("distilled", 4),
                                                           ("scratch", 4)]
    ckpt = tmp_path / "s.ckpt"
    assert "runs (4):" in text
    assert f"1. distilled student, seed 3, from the teacher logits: checkpoints in {ckpt / 'student'}, " \
           f"logs in {tmp_path / 'logs' / 'student'}" in text
    assert f"4. scratch twin (--baseline), seed 4, from the hard labels: checkpoints in {ckpt / 'baseline-seed4'}" in text
    assert f"student: {out}" in text and f"checkpoints: {ckpt}" in text and f"logs: {tmp_path / 'logs'}" in text


def test_distill_dry_run_from_soft_labels_names_the_file_and_its_teacher(teachers, tmp_path, nothing_runs):
    before = listing(tmp_path)
    out = tmp_path / "student.keras"
    _, plan = pipeline.distill_student(soft_labels=teachers["soft"], out=out, student="shrink:0.5",
                                       budget=Budget(epochs=3), dry_run=True)
    assert listing(tmp_path) == before
    text = str(plan)
    assert_names_the_data(text)  # recorded in the soft labels; fixed epochs hold nothing out
    assert f"soft labels: {teachers['soft']} (1,438 x 10 logits, float32; teacher head logits" in text
    assert "the teacher never runs" in text
    assert f"teacher: {teachers['logits']} (keras, head logits" in text  # recorded, to derive shrink:0.5
    assert "student: shrink:0.5, " in text and "method: kd: temperature=4.0, alpha=0.9" in text
    assert "budget: epochs 3, " in text
    assert "1. distilled student, seed 0, from the teacher logits" in text and "runs (1):" in text


def test_distill_dry_run_lists_the_tuner_trials(teachers, tmp_path, nothing_runs):
    before = listing(tmp_path)
    _, plan = pipeline.distill_student("digits", tmp_path / "t.keras", teacher=teachers["logits"], tune=3,
                                       tune_json=tmp_path / "trials.json", budget=Budget(seed=1), dry_run=True)
    assert listing(tmp_path) == before
    text = str(plan)
    assert [run.role for run in plan.runs] == ["trial"] * 3 and plan.trials[0].scratch
    assert "method: searched by --tune" in text
    assert "1. trial 1/3: scratch, from the hard labels: checkpoints in " in text
    assert "2. trial 2/3: kd T=4 alpha=0.9, from the teacher logits" in text
    assert f"3. trial 3/3: {plan.trials[2].label()}, " in text
    assert f"tuning trials (JSON): {tmp_path / 'trials.json'}" in text


def test_a_dry_run_refuses_what_a_run_refuses(teachers, tmp_path, nothing_runs):
    with pytest.raises(UsageError, match="add --baseline"):
        pipeline.distill_student("digits", tmp_path / "s.keras", teacher=teachers["logits"], seeds=2, dry_run=True)
    with pytest.raises(UsageError, match="--student-output sigmoid is for two classes"):
        pipeline.distill_student("digits", tmp_path / "s.keras", teacher=teachers["logits"],
                                 student_output="sigmoid", dry_run=True)
    with pytest.raises(Exception, match="give a path ending in .keras"):
        pipeline.train_teacher("digits", tmp_path / "t.h5", "mlp", dry_run=True)
    assert listing(tmp_path) == []


@pytest.mark.parametrize("command", [
    ["train-teacher", "--data", "digits", "--epochs", "auto", "--out", "{tmp}/t.keras"],
    ["soft-labels", "--teacher", "{logits}", "--out", "{tmp}/soft.h5"],
    ["distill", "--teacher", "{logits}", "--baseline", "--seeds", "2", "--method", "dkd:beta=2",
     "--log-dir", "{tmp}/logs", "--out", "{tmp}/s.keras"],
], ids=["train-teacher", "soft-labels", "distill"])
def test_dry_run_on_the_command_line_prints_the_plan_and_writes_nothing(teachers, tmp_path, command):
    from conftest import run_cli

    before = sorted(teachers["logits"].parent.iterdir())
    args = [a.format(tmp=tmp_path, logits=teachers["logits"]) for a in command]
    r = run_cli(*args, "--dry-run")
    assert r.exit_code == 0, r.stderr
    assert "a dry run" in r.stdout and "data: digits" in r.stdout and "outputs:" in r.stdout
    if command[0] == "distill":
        assert "method: dkd: temperature=4.0, alpha=1.0, beta=2.0, warmup=20, standardize=False" in r.stdout
        assert "runs (4):" in r.stdout and "scratch twin" in r.stdout
    assert list(tmp_path.iterdir()) == [] and sorted(teachers["logits"].parent.iterdir()) == before
