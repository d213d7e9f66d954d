"""kdcli compress: the smallest student within --max-drop points of its teacher, every objective and
format, the frontier (table, JSON, plot), the exit code 3, resume after SIGKILL without repeating
finished trials, two processes sharing one study, and the refusals."""

import json
import re
import sqlite3
import subprocess
import sys

import pytest

import kdcli

from conftest import EPOCH_LINE, assert_one_line_error, kdcli_process, run_cli

FAST = ("--max-epochs", "3", "--patience", "2", "--latency-runs", "10")


def compress_args(pipeline, out, *more, widths="0.25,0.0625", trials="4"):
    return ["compress", "--teacher", pipeline["teacher"], "--widths", widths, "--trials", trials, *FAST, *more,
            "--out", out]


def trained(stderr):
    """The trials that trained in a run, by the labels of their epoch lines (`trial 2/4`)."""
    return {line.split(" (", 1)[0] for line in stderr.splitlines() if EPOCH_LINE.fullmatch(line)}


@pytest.mark.slow
def test_a_met_target_writes_the_smallest_student_and_the_frontier(pipeline, tmp_path):
    out = tmp_path / "small.keras"
    r = run_cli(*compress_args(pipeline, out, "--max-drop", "100", "--json", tmp_path / "r.json",
                               "--plot", tmp_path / "f.png"))
    assert r.exit_code == 0, r.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["schema"] == "kdcli.compress/1" and result["met"] and result["objective"] == "params"
    assert [row["width"] for row in result["frontier"]] == [0.25, 0.0625]
    assert all(row["distilled"] and row["scratch"]["scratch"] for row in result["frontier"])
    smallest = min(result["trials"], key=lambda t: (t["params"], -t["val_accuracy"], t["trial"]))
    assert result["chosen"]["trial"] == smallest["trial"] and result["chosen"]["width"] == 0.0625
    assert result["target"]["min_val_accuracy"] == pytest.approx(result["teacher"]["test_accuracy"] - 1.0)
    # the table: the teacher row, one row per width, the chosen one marked
    table = r.stdout
    assert "compress: smallest by parameters within 100 points (keras)" in table
    assert re.search(r"│ teacher\s+│\s+[\d,]+ │", table)
    assert re.search(rf"│ x0\.0625 .* {result['chosen']['trial']}\* │", table)
    assert "chosen: trial" in table and max(len(line) for line in table.splitlines() if line[0] in "┏┃┡│└") <= 80
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a drop-in student with its provenance; evaluate and info show how it was chosen
    record = kdcli.read_provenance(out)
    from kdcli.models import head_kind

    assert record["output"] == head_kind(kdcli.load_model(pipeline["teacher"])) == head_kind(kdcli.load_model(out))
    assert record["hyperparameters"]["student"] == "shrink:0.0625"
    assert record["metrics"]["compress"] == {
        "max_drop_points": 100.0, "objective": "params", "format": "keras", "study": result["study"],
        "trial": result["chosen"]["trial"], "width": 0.0625, "val_accuracy": result["chosen"]["val_accuracy"],
        "test_accuracy": result["chosen"]["test_accuracy"], "drop_points": result["drop_points"],
        "params": result["chosen"]["params"]}
    if result["chosen"]["scratch"]:  # the smallest within the target learned from the labels alone
        assert "baseline_test_accuracy" not in record["metrics"]
        assert record["hyperparameters"]["mode"] == "hard-labels"
    else:
        assert record["metrics"]["baseline_test_accuracy"] == result["scratch_twin"]["keras_test_accuracy"]
    assert kdcli.load_model(out).count_params() == result["chosen"]["params"]
    r = run_cli("evaluate", pipeline["teacher"], out, "--latency-runs", "10", "--json", tmp_path / "e.json")
    assert r.exit_code == 0, r.stderr
    assert f"{out}: compressed, the smallest by params within 100 points of its teacher (keras)" in \
        " ".join(r.stdout.split())
    assert json.loads((tmp_path / "e.json").read_text())["models"][1]["compress"]["trial"] == result["chosen"]["trial"]
    r = run_cli("info", out)
    assert json.loads(r.stdout)["metrics"]["compress"]["objective"] == "params"


@pytest.mark.slow
def test_an_unmet_target_exits_3_writes_nothing_and_a_rerun_reuses_the_trials(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli(*compress_args(pipeline, out, "--max-drop", "0", "--json", "-", widths="0.0625", trials="2"))
    assert r.exit_code == 3, r.stderr
    result = json.loads(r.stdout)
    assert not result["met"] and result["chosen"]["val_accuracy"] < result["target"]["min_val_accuracy"]
    assert result["drop_points"] > 0 and not out.exists() and "out" not in result
    r = run_cli(*compress_args(pipeline, out, "--max-drop", "0", widths="0.0625", trials="2"))
    assert r.exit_code == 3 and "target not met: the best found is trial" in " ".join(r.stdout.split())
    assert not trained(r.stderr)  # the study was done: nothing trained again
    r = run_cli(*compress_args(pipeline, out, "--max-drop", "100", widths="0.0625", trials="2"))
    assert r.exit_code == 0 and out.exists() and not trained(r.stderr)  # --max-drop only changes the choice


@pytest.mark.slow
@pytest.mark.parametrize("objective, format", [("size", "int8"), ("latency", "float16")])
def test_every_objective_and_format_is_measured_on_the_artifact(pipeline, tmp_path, objective, format):
    out = tmp_path / "s.keras"
    r = run_cli(*compress_args(pipeline, out, "--max-drop", "100", "--objective", objective, "--format", format,
                               "--json", "-", widths="0.25", trials="2"))
    assert r.exit_code == 0, r.stderr
    result = json.loads(r.stdout)
    key = {"size": "size_bytes", "latency": "latency_ms"}[objective]
    assert result["objective_key"] == key
    assert result["chosen"] == min(result["trials"], key=lambda t: (t[key], -t["val_accuracy"], t["trial"]))
    export = tmp_path / f"s-{format}.tflite"
    assert result["out"] == [str(out), str(export)] and export.is_file()
    trial_export = tmp_path / "s.trials" / result["chosen"]["folder"] / f"student-{format}.tflite"
    assert result["chosen"]["size_bytes"] == trial_export.stat().st_size  # measured on the exported file
    record = kdcli.read_provenance(out)["metrics"]
    assert record["compress"][key] == result["chosen"][key]
    # the .keras file's own test accuracy, beside the export's that was judged
    assert record["test_accuracy"] == result["chosen"]["keras_test_accuracy"]
    assert record["compress"]["test_accuracy"] == result["chosen"]["test_accuracy"]


@pytest.mark.slow
def test_a_search_killed_mid_trial_resumes_that_trial_and_repeats_no_finished_one(pipeline, tmp_path):
    args = compress_args(pipeline, tmp_path / "s.keras", "--max-drop", "100", "--checkpoint-every", "0",
                         widths="0.25", trials="2")
    # killed in trial 2's second epoch (each trial trains 90% of the training split: 21 steps an epoch)
    first = kdcli_process(*args, fault=f"step:{3 * 21 + 21 + 3}:KILL")
    assert first.returncode == -9, first.stderr
    assert trained(first.stderr) == {"trial 1/2", "trial 2/2"}
    again = kdcli_process(*args)
    assert again.returncode == 0, again.stderr
    assert trained(again.stderr) == {"trial 2/2"} and "resuming from" in again.stderr
    result = kdcli.read_provenance(tmp_path / "s.keras")["metrics"]["compress"]
    assert result["trial"] in (1, 2)
    db = sqlite3.connect(tmp_path / "s.study.db")
    states = [state for (state,) in db.execute("select state from trials order by number")]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]  # trial 2, killed, ran again as one more Optuna trial


@pytest.mark.slow
def test_two_processes_share_one_study_and_together_run_n_trials_none_twice(pipeline, tmp_path):
    study = f"sqlite:///{tmp_path / 'shared.db'}"

    def start(name):
        args = compress_args(pipeline, tmp_path / f"{name}.keras", "--max-drop", "100", "--study", study,
                             "--checkpoint-dir", tmp_path / "trials", "--json", tmp_path / f"{name}.json",
                             widths="0.25,0.125,0.0625", trials="6")
        return subprocess.Popen([sys.executable, "-m", "kdcli", *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    a, b = start("a"), start("b")
    (_, a_err), (_, b_err) = a.communicate(timeout=600), b.communicate(timeout=600)
    assert a.returncode == 0 and b.returncode == 0, a_err + b_err
    assert trained(a_err) and trained(b_err) and not trained(a_err) & trained(b_err)  # each trained its own
    assert len(trained(a_err) | trained(b_err)) == 6
    db = sqlite3.connect(tmp_path / "shared.db")
    done = db.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    assert done == 6
    trials = json.loads((tmp_path / "a.json").read_text())["trials"]
    assert len({t["label"] for t in trials}) == 6 and len({t["folder"] for t in trials}) == 6
    assert json.loads((tmp_path / "b.json").read_text())["chosen"] == json.loads((tmp_path / "a.json").read_text())["chosen"]


@pytest.mark.slow
def test_minutes_bound_the_search(pipeline, tmp_path):
    r = run_cli("compress", "--teacher", pipeline["teacher"], "--widths", "0.25", "--minutes", "0.01", *FAST,
                "--max-drop", "100", "--json", "-", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["trials"]) == 1  # the first trial outlasts 0.6 s: no second starts
    assert trained(r.stderr) == {"trial 1"}  # no trial count to show


@pytest.mark.parametrize("more, message", [
    (["--max-drop", "-1"], "--max-drop is in accuracy points, 0 or more; got -1.0"),
    (["--objective", "flops"], "--objective must be one of params, size, latency"),
    (["--format", "onnx"], "--format must be one of keras, float16, int8"),
    (["--trials", "1"], "--trials needs 2 or more"),
    (["--minutes", "0"], "--minutes must be above 0"),
    (["--widths", "0.5,0"], "--widths needs positive numbers"),
    (["--widths", "half"], "--widths needs numbers separated by commas"),
    (["--student", "app:MobileNetV2"], "compress searches the widths of shrink:F or a built-in student"),
    (["--study", "nosuchdb://x"], "--study nosuchdb://x: cannot open the study"),
])
def test_bad_compress_options_are_usage_errors(pipeline, tmp_path, more, message):
    r = run_cli("compress", "--teacher", pipeline["teacher"], *more, "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, message)
    assert not (tmp_path / "s.keras").exists()


def test_a_study_made_for_another_teacher_is_refused(pipeline, tmp_path):
    from kdcli.tuning import open_study

    url = f"sqlite:///{tmp_path / 's.db'}"
    open_study(url, "compress", {"teacher_sha256": "0" * 64}, ["maximize", "minimize"], 0)
    r = run_cli("compress", "--teacher", pipeline["teacher"], "--study", url, "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, f"--study {url}: the study 'compress' was made for another")
    assert "teacher" in r.stderr and not (tmp_path / "s.keras").exists()


def test_a_missing_teacher_is_one_line(tmp_path):
    r = run_cli("compress", "--teacher", tmp_path / "none.keras", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "none.keras")
