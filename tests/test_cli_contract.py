"""The command-line contract: what a user meets at the command line, through Typer's CliRunner and real
subprocesses. The result alone on stdout and the talk on stderr (nothing but the result with --quiet);
usage errors as one line and a hint, exit code 2, before any work; expected errors as one `error:` line,
exit code 4, nothing half-written (the traceback with --debug); paths recorded in provenance that resolve
from the artifact; advice that works when followed; the README's CI snippet; --version, --help that fits
a screen and imports nothing heavy, shell completion, `python -m kdcli`; reports that fit the terminal.

What the pipeline produces (a smaller trained student, provenance, repeatable seeds...) is in
test_pipeline.py."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import kdcli
from kdcli import report

from conftest import assert_one_line_error, run_cli

README = Path(__file__).resolve().parent.parent / "README.md"


def _run(*args, **kw):
    """Run the venv's Python with `args` in a subprocess."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, **kw)


# --- stdout holds the result, stderr the talk -------------------------------------------------------------

def test_steps_print_only_the_artifact_path_on_stdout(pipeline, tmp_path):
    out = tmp_path / "nested" / "t.keras"
    r = run_cli("train-teacher", "--data", "digits", "--arch", "mlp", "--width", "16", "--depth", "1",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{out}\n"
    assert "teacher: test accuracy" in r.stderr
    assert out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["t.keras"]  # no temporary file left


def test_quiet_prints_nothing_but_the_result(pipeline, tmp_path):
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--out", tmp_path / "s.h5", "--quiet")
    assert r.exit_code == 0
    assert r.stdout == f"{tmp_path / 's.h5'}\n"
    assert r.stderr == ""


def test_evaluate_json_on_stdout(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--json", "-", "--latency-runs", "20")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["schema"] == "kdcli.evaluate/1"
    first, second = report["models"]
    for m in (first, second):
        for key in ("path", "accuracy", "params", "size_bytes", "latency_ms", "latency_p95_ms", "throughput"):
            assert key in m
        assert m["latency_ms"] > 0 and m["latency_p95_ms"] >= m["latency_ms"]
    assert first["path"] == str(pipeline["teacher"])
    assert first["size_bytes"] == pipeline["teacher"].stat().st_size
    assert first["agreement"] == 1.0
    assert second["compression"] == pytest.approx(first["params"] / second["params"])
    assert second["accuracy_change_points"] == pytest.approx(100 * (second["accuracy"] - first["accuracy"]))
    # accuracy is computed on the test split
    data = kdcli.load_data("digits")
    from kdcli.inference import accuracy

    assert first["accuracy"] == pytest.approx(accuracy(kdcli.load_model(pipeline["teacher"]), data.test))


def test_evaluate_table_and_json_file(pipeline, tmp_path):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--json", tmp_path / "r.json",
                "--latency-runs", "20")
    assert r.exit_code == 0, r.stderr
    assert "teacher.keras" in r.stdout and "compression" not in r.stdout and "smaller" in r.stdout
    assert "latency: 20 single-sample calls after 20 warm-up calls" in r.stdout
    assert len(json.loads((tmp_path / "r.json").read_text())["models"]) == 2


# --- usage errors: one line, then where to read more; exit code 2 ---------------------------------------

@pytest.mark.parametrize("args, contains", [
    (["distill", "--bogus"], "no such option: --bogus"),
    (["distill", "--batch-size", "many"], "'--batch-size'"),
    (["distill", "--epochs", "many"], "--epochs must be auto or a whole number of at least 1, got 'many'"),
    (["soft-labels"], "--teacher"),
    (["soft-labels", "merge"], "missing argument 'PART'"),
    (["evaluate"], "missing argument 'MODEL'"),
    (["--bogus"], "--bogus"),
])
def test_usage_errors_are_one_line_and_a_hint(args, contains):
    r = run_cli(*args)
    assert_one_line_error(r, 2, contains)
    assert "╭" not in r.stderr and "Usage:" not in r.stderr  # no box, no usage block
    command = " ".join(["kdcli", *(a for a in args[:2] if a in ("distill", "soft-labels", "evaluate", "merge"))])
    assert r.stderr.strip().splitlines()[1] == f"try '{command} --help'"


def test_bare_distill_says_what_to_give():
    r = run_cli("distill")
    assert_one_line_error(r, 2, "give --teacher (a .keras model) or --soft-labels")
    assert "not both" not in r.stderr


@pytest.mark.parametrize("args, option", [
    (["distill", "--soft-labels", "{soft}", "--student", "resnet"], "--student 'resnet'"),
    (["distill", "--teacher", "{teacher}", "--student", "shrink:0"], "--student shrink:0"),
    (["distill", "--teacher", "{teacher}", "--student", "shrink:big"], "--student shrink:big"),
    (["soft-labels", "--teacher", "{teacher}", "--top-k", "10", "--out", "{tmp}/s.h5"], "--top-k"),
    (["soft-labels", "--teacher", "{teacher}", "--split", "test"], "--split test"),
    (["train-teacher", "--arch", "transformer", "--out", "{tmp}/t.keras"], "--arch 'transformer'"),
    (["train-teacher", "--model", "{tmp}/arch.pt", "--out", "{tmp}/t.keras"], "--model"),
    (["train-teacher", "--model", "myarch", "--out", "{tmp}/t.keras"], "--model myarch: give a .keras (or legacy .h5) file"),
    (["distill", "--soft-labels", "{soft}", "--online"], "--online"),
    (["distill", "--soft-labels", "{soft}", "--resume", "--restart"], "--resume"),
])
def test_bad_option_values_exit_2_and_name_the_option(pipeline, tmp_path, args, option):
    args = [a.format(soft=pipeline["soft"], teacher=pipeline["teacher"], tmp=tmp_path) for a in args]
    r = run_cli(*args)
    assert_one_line_error(r, 2, option)
    assert "--student" not in r.stderr or "--student" in option  # no hint meant for another option
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.parametrize("args", [
    ["distill", "--epochs", "zero"],
    ["distill", "--data", "digits"],  # neither --soft-labels nor --teacher
    ["train-teacher", "--restart", "--resume"],
    ["distill", "--soft-labels", "s.h5", "--online"],
    ["distill", "--soft-labels", "s.h5", "--method", "kd:temperature=0"],
    ["train-teacher", "--learning-rate", "-0.1"],
    ["train-teacher", "--seed", "-1"],
    ["train-teacher", "--val-split", "1.5"],
    ["train-teacher", "--image-size", "32x32x3"],
    ["export", "m.keras", "--format", "saved_model", "--quantize", "int8"],
])
def test_usage_errors_exit_2_before_any_work(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run_cli(*args)
    assert r.exit_code == 2, (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


# --- expected errors: one line, exit code 4, nothing half-written; --debug shows the traceback ------

@pytest.mark.parametrize(
    "args, message",
    [
        (["train-teacher", "--data", "nosuchdata", "--out", "{tmp}/t.keras"], "unknown data set 'nosuchdata'"),
        (["train-teacher", "--data", "{tmp}/missing.npz", "--out", "{tmp}/t.keras"], "no such file"),
        (["train-teacher", "--out", "{tmp}/t.h5"], "give a path ending in .keras"),
        (["soft-labels", "--teacher", "{tmp}/missing.keras", "--data", "digits", "--out", "{tmp}/s.h5"], "no such model file"),
        (["distill", "--soft-labels", "{tmp}/missing.h5", "--out", "{tmp}/s.keras"], "no such soft-label file"),
        (["evaluate", "{tmp}/missing.keras", "--data", "digits"], "no such model file"),
    ],
)
def test_bad_input_is_one_line_and_exit_4(tmp_path, args, message):
    r = run_cli(*[a.format(tmp=tmp_path) for a in args])
    assert_one_line_error(r, 4, message)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_corrupt_model_is_refused(tmp_path, pipeline):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(pipeline["teacher"].read_bytes()[:2000])
    r = run_cli("soft-labels", "--teacher", bad, "--data", "digits", "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "bad.keras")
    assert not (tmp_path / "s.h5").exists()


def test_model_that_does_not_fit_the_data_is_refused(tmp_path, pipeline):
    np.savez(tmp_path / "wide.npz", x=np.random.default_rng(0).random((60, 5, 5)), y=np.arange(60) % 3)
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--data", tmp_path / "wide.npz",
                "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "inputs of shape (8, 8), the data has samples of shape (5, 5)")


def test_out_that_is_a_directory_is_refused(tmp_path, pipeline):
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--out", tmp_path)
    assert_one_line_error(r, 4, "is a directory")


def test_user_architecture_with_wrong_outputs_is_refused(tmp_path):
    import keras

    keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Dense(3)]).save(tmp_path / "arch.keras")
    r = run_cli("train-teacher", "--model", tmp_path / "arch.keras", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "the model has 3 outputs, the data has 10 classes")


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("train-teacher", "--data", "nosuchdata", "--debug", "--out", tmp_path / "t.keras")
    assert r.exit_code == 4
    assert "Traceback" in r.stderr and "error: unknown data set" in r.stderr


def test_subprocess_error_has_clean_stderr(tmp_path):
    r = _run("-m", "kdcli", "distill", "--soft-labels", str(tmp_path / "x.h5"), "--data", "digits")
    assert r.returncode == 4
    assert r.stderr.strip().splitlines() == [f"error: {tmp_path / 'x.h5'}: no such soft-label file"]


# --- checks before work --------------------------------------------------------------------------------

def _tensorflow_imported_after(*args, block=None):
    """Run the CLI in a fresh interpreter; say whether TensorFlow (the start of any real work) was imported."""
    code = (
        "import sys\n"
        + (f"sys.modules[{block!r}] = None\n" if block else "")
        + "from kdcli.cli import app\n"
        "try:\n    app(sys.argv[1:], prog_name='kdcli')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120)
    code, imported = r.stdout.split()
    return int(code), imported == "True", r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("args, contains", [
    (["evaluate", "nope.keras"], "nope.keras: no such model file"),
    (["evaluate", "{teacher}", "--json", "{tmp}"], "give a file path for --json"),
    (["evaluate", "{teacher}", "--markdown", "{tmp}"], "give a file path for --markdown"),
    (["evaluate", "{teacher}", "--plot", "{tmp}/plot.jpg"], "ending in .png for --plot"),
    (["evaluate", "{teacher}", "--json", ""], "--json: the path is empty"),
    (["evaluate", "{teacher}", "--markdown", ""], "--markdown: the path is empty"),
    (["evaluate", "{teacher}", "--append"], "--append"),
    (["soft-labels", "--teacher", "nope.keras"], "no such model file"),
    (["distill", "--teacher", "nope.keras"], "no such model file"),
    (["distill", "--soft-labels", "{soft}", "--student", "nope.keras"], "no such model file"),
    (["train-teacher", "--model", "nope.keras"], "no such model file"),
    (["export", "nope.keras"], "no such model file"),
])
def test_inputs_outputs_and_options_are_checked_before_any_work(pipeline, tmp_path, args, contains):
    args = [a.format(teacher=pipeline["teacher"], soft=pipeline["soft"], tmp=tmp_path) for a in args]
    code, tensorflow, stderr = _tensorflow_imported_after(*args)
    assert code in (2, 4) and contains in stderr, stderr
    assert not tensorflow


def test_plot_without_matplotlib_is_refused_before_any_work(pipeline, tmp_path):
    code, tensorflow, stderr = _tensorflow_imported_after(
        "evaluate", pipeline["teacher"], "--plot", tmp_path / "p.png", block="matplotlib")
    assert code == 4 and "pip install 'kdcli[plot]'" in stderr
    assert not tensorflow


# --- nothing thrown away silently: see test_reliability.py for checkpoints -------------------------------

# --- --unsafe covers the user's own architectures -----------------------------------------------------------

@pytest.fixture(scope="module")
def lambda_arch(tmp_path_factory):
    """An untrained architecture with a Lambda layer, saved with plain Keras."""
    import keras

    inputs = keras.Input((8, 8))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Lambda(lambda t: t / 16.0)(x)
    outputs = keras.layers.Dense(10)(keras.layers.Dense(16, activation="relu")(x))
    path = tmp_path_factory.mktemp("lambda") / "lambda.keras"
    keras.Model(inputs, outputs).save(path)
    return path


@pytest.mark.slow
def test_unsafe_trains_a_teacher_and_a_student_with_lambda_layers(pipeline, lambda_arch, tmp_path):
    r = run_cli("train-teacher", "--model", lambda_arch, "--epochs", "1", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "pass --unsafe")
    r = run_cli("train-teacher", "--model", lambda_arch, "--epochs", "1", "--unsafe", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0, r.stderr
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", lambda_arch, "--epochs", "1", "--unsafe",
                "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.load_model(tmp_path / "s.keras", unsafe=True).count_params() == \
        kdcli.load_model(lambda_arch, unsafe=True).count_params()


# --- paths in provenance resolve from the artifact ------------------------------------------------------------

@pytest.fixture
def tabular(tmp_path, monkeypatch):
    """A teacher trained inside data/ on data/tabular.npz, as a user working in that folder would."""
    rng = np.random.default_rng(0)
    (tmp_path / "data").mkdir()
    x = rng.normal(size=(300, 6)).astype("float32")
    np.savez(tmp_path / "data" / "tabular.npz", x=x, y=(x[:, 0] > 0).astype("int64"))
    monkeypatch.chdir(tmp_path / "data")
    r = run_cli("train-teacher", "--data", "tabular.npz", "--arch", "mlp", "--width", "8", "--epochs", "1",
                "--out", "runs/tabular.keras")
    assert r.exit_code == 0, r.stderr
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_recorded_data_paths_resolve_from_the_artifact(tabular):
    assert kdcli.read_provenance("data/runs/tabular.keras")["data"]["spec"] == "../tabular.npz"
    r = run_cli("soft-labels", "--teacher", "data/runs/tabular.keras", "--out", "soft.h5")
    assert r.exit_code == 0, r.stderr
    # and the soft labels record the data and the teacher relative to themselves
    record = kdcli.read_provenance("soft.h5")
    assert (record["data"]["spec"], record["teacher"]) == ("data/tabular.npz", "data/runs/tabular.keras")
    r = run_cli("distill", "--soft-labels", "soft.h5", "--student", "shrink:0.5", "--epochs", "1", "--out", "s.keras")
    assert r.exit_code == 0, r.stderr


@pytest.mark.slow
def test_a_missing_recorded_path_says_where_it_came_from_and_pass_data_works(tabular):
    shutil.move("data/tabular.npz", "moved.npz")
    r = run_cli("soft-labels", "--teacher", "data/runs/tabular.keras", "--out", "soft.h5")
    assert_one_line_error(r, 4, "../tabular.npz: no such data (the path recorded in the provenance of "
                                "data/runs/tabular.keras")
    assert r.stderr.rstrip().endswith("pass --data")
    r = run_cli("soft-labels", "--teacher", "data/runs/tabular.keras", "--out", "soft.h5", "--data", "moved.npz")
    assert r.exit_code == 0, r.stderr


# --- advice that can be followed ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_shrink_with_soft_labels_whose_teacher_moved_then_give_it_with_teacher(pipeline, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    shutil.copy(pipeline["teacher"], "models/teacher.keras")
    assert run_cli("soft-labels", "--teacher", "models/teacher.keras", "--out", "soft.h5").exit_code == 0
    soft = tmp_path / "soft.h5"
    assert kdcli.read_provenance(soft)["teacher"] == "models/teacher.keras"  # relative to the soft labels
    shutil.rmtree("models")  # the teacher goes elsewhere
    args = ["distill", "--soft-labels", soft, "--student", "shrink:0.5", "--epochs", "1", "--out", tmp_path / "s.keras"]
    r = run_cli(*args)
    assert_one_line_error(r, 4, "give its path with --teacher")
    r = run_cli(*args, "--teacher", pipeline["teacher"])  # the advice, followed
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(tmp_path / "s.keras")["hyperparameters"]["mode"] == "soft-labels"
    # another teacher than the soft labels' is refused; the advice (make soft labels with it), followed, works
    other = tmp_path / "other.keras"
    assert run_cli("train-teacher", "--arch", "mlp", "--width", "8", "--epochs", "1", "--out", other).exit_code == 0
    r = run_cli(*args, "--teacher", other)
    assert_one_line_error(r, 4, "not the teacher")
    assert "make soft labels with this one (kdcli soft-labels)" in r.stderr
    assert run_cli("soft-labels", "--teacher", other, "--out", soft).exit_code == 0
    assert run_cli(*args, "--teacher", other).exit_code == 0


def test_an_absolute_data_path_stays_absolute_in_provenance(tmp_path, monkeypatch):
    np.savez(tmp_path / "tab.npz", x=np.random.default_rng(0).normal(size=(200, 4)), y=np.arange(200) % 2)
    monkeypatch.chdir(tmp_path)
    r = run_cli("train-teacher", "--data", tmp_path / "tab.npz", "--arch", "mlp", "--width", "8", "--epochs", "1",
                "--out", "runs/t.keras")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance("runs/t.keras")["data"]["spec"] == str(tmp_path / "tab.npz")
    shutil.copytree("runs", tmp_path / "elsewhere" / "deeper" / "runs")  # moved, the data stays found
    r = run_cli("soft-labels", "--teacher", tmp_path / "elsewhere" / "deeper" / "runs" / "t.keras",
                "--out", tmp_path / "s.h5")
    assert r.exit_code == 0, r.stderr


def test_online_with_soft_labels_advice_works(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--online", "--epochs", "1")
    assert_one_line_error(r, 2, "give --teacher, without --soft-labels")
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--online", "--epochs", "1",
                "--student", "mlp", "--width", "8", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr


@pytest.mark.slow
def test_augment_with_soft_labels_advice_works(pipeline, tmp_path):
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--augment", "shift", "--epochs", "1")
    assert_one_line_error(r, 2, "give --teacher, without --soft-labels")
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--augment", "shift", "--epochs", "1",
                "--student", "mlp", "--width", "8", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr


# --- the README's CI snippet, in CI and on a laptop -------------------------------------------------------------

def _readme_ci_target():
    blocks = re.findall(r"```make\n(.*?)```", README.read_text(), re.S)
    target = [b for b in blocks if "GITHUB_STEP_SUMMARY" in b]
    assert len(target) == 1
    return target[0]


@pytest.mark.slow
@pytest.mark.parametrize("in_ci", [True, False])
def test_the_readme_ci_snippet_works_in_ci_and_on_a_laptop(pipeline, tmp_path, in_ci):
    (tmp_path / "runs").mkdir()
    for name in ("teacher", "student"):
        shutil.copy(pipeline[name], tmp_path / "runs" / f"{name}.keras")
    (tmp_path / "Makefile").write_text(_readme_ci_target())
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_STEP_SUMMARY"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the venv's kdcli
    summary = tmp_path / ("summary.md" if in_ci else "report.md")
    if in_ci:
        env["GITHUB_STEP_SUMMARY"] = str(summary)
        summary.write_text("## an earlier step\n")
    target = re.match(r"([\w-]+):", _readme_ci_target()).group(1)
    r = subprocess.run(["make", "-s", target], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    # The tiny test student may fail a gate (exit 3): the snippet itself must work either way.
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert all(line.startswith("error: gate failed") for line in errors), r.stderr
    assert "teacher.keras" in summary.read_text()
    if in_ci:
        assert summary.read_text().startswith("## an earlier step\n")  # appended, as GitHub expects


@pytest.mark.slow
def test_markdown_append_adds_to_the_file_and_the_default_replaces_it(pipeline, tmp_path):
    md = tmp_path / "report.md"
    for _ in range(2):
        r = run_cli("evaluate", pipeline["teacher"], "--markdown", md, "--append", "--latency-runs", "10")
        assert r.exit_code == 0, r.stderr
    assert md.read_text().count("### digits") == 2
    r = run_cli("evaluate", pipeline["teacher"], "--markdown", md, "--latency-runs", "10")
    assert md.read_text().count("### digits") == 1


# --- what people expect of a CLI ----------------------------------------------------------------------------------

def test_version():
    r = run_cli("--version")
    assert r.exit_code == 0 and r.stdout == f"kdcli {kdcli.__version__}\n"



def test_python_dash_m_works_like_kdcli(pipeline):
    r = _run("-m", "kdcli", "--help")
    assert r.returncode == 0 and "train-teacher" in r.stdout
    r = _run("-m", "kdcli", "info", str(pipeline["teacher"]))
    assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "teacher"


def test_shell_completion_is_offered():
    r = run_cli("--help")
    assert "--install-completion" in r.stdout and "--show-completion" in r.stdout
    # The shell is the parent process's (as when a user types it in bash), whatever runs the tests (make's sh);
    # `; exit $?` keeps bash the parent (bash -c execs a lone command).
    r = subprocess.run(["bash", "-c", f"'{sys.executable}' -m kdcli --show-completion; exit $?"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "_KDCLI_COMPLETE" in r.stdout, r.stderr


def test_plot_help_shows_the_extra_to_install():
    r = run_cli("evaluate", "--help")
    assert "kdcli[plot]" in " ".join(r.stdout.split())


def test_help_and_dir_show_the_public_api():
    import pydoc

    names = set(dir(kdcli))
    assert {"load_data", "build_model", "distill", "train", "distillation_loss", "make_method", "KdcliError"} <= names
    text = pydoc.render_doc(kdcli, renderer=pydoc.plaintext)
    # signatures, which only the listing of the functions themselves shows
    for signature in ("load_data(spec, val_split=0.2", "distill(student, data, budget=None",
                      "dkd_loss_per_sample(labels, student_logits"):
        assert signature in text


def test_one_epoch_is_singular(tmp_path):
    r = run_cli("train-teacher", "--arch", "mlp", "--width", "8", "--epochs", "1", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0, r.stderr
    assert "after 1 epoch (" in r.stderr


# --- the report of real models fits the terminal -------------------------------------------------------------------

@pytest.fixture(scope="module")
def baseline_report(pipeline, tmp_path_factory):
    """evaluate's JSON for the pipeline's teacher and student and a student made with --baseline."""
    out = tmp_path_factory.mktemp("baseline") / "a-rather-long-folder-name" / "student-with-baseline.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--epochs", "1", "--baseline", "--out", out)
    assert r.exit_code == 0, r.stderr
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], out, "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("with_baseline", [True, False])
def test_the_report_of_real_models_fits_80_100_120_columns(baseline_report, width, with_baseline):
    result = dict(baseline_report)
    if not with_baseline:
        result["models"] = result["models"][:2]
    console = Console(file=io.StringIO(), width=width, color_system=None)
    report.render(result, console)
    text = console.file.getvalue()
    assert max(map(len, text.splitlines())) <= width and "…" not in text
    header, body = report.rows(result)
    assert ("from scratch (gain)" in text) == with_baseline
    for row in body:
        for value in row[1:]:
            assert any(value in line for line in text.splitlines()), (value, text)
    joined = "".join(text.split())
    for model in result["models"]:
        assert "".join(model["path"].split()) in joined


def test_a_report_to_a_file_or_log_has_a_fixed_width(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    from kdcli.cli import LOG_WIDTH

    assert max(map(len, r.stdout.splitlines())) <= LOG_WIDTH and "…" not in r.stdout


def test_the_docs_json_example_has_the_keys_evaluate_writes(pipeline):
    page = README.parent / "docs" / "guides" / "comparing.md"
    example = json.loads(re.search(r"`kdcli.evaluate/1`.*?```json\n(.*?)```", page.read_text(), re.S).group(1))
    r = run_cli("evaluate", pipeline["teacher"], pipeline["student"], "--min-accuracy", "0.1", "--json", "-",
                "--latency-runs", "10")
    real = json.loads(r.stdout)
    assert example.keys() == real.keys()
    for section in ("data", "latency"):
        assert example[section].keys() == real[section].keys(), section
    for shown, written in zip(example["models"], real["models"]):
        # only a student that stopped on its validation split (the docs', by default) has a best epoch
        assert shown.keys() - {"best_epoch"} == written.keys() - {"best_epoch"}
    assert "best_epoch" in example["models"][1]
    assert [g.keys() for g in example["gates"]] == [g.keys() for g in real["gates"]]


COMMANDS = (["train-teacher"], ["soft-labels"], ["soft-labels", "merge"], ["distill"], ["evaluate"], ["export"],
            ["info"], [])


def help_at_80_columns(*command):
    """The help as a terminal 80 columns wide shows it."""
    r = subprocess.run([sys.executable, "-m", "kdcli", *command, "--help"], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "COLUMNS": "80", "TERM": "xterm"})
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kdcli")
def test_every_help_fits_a_screen(command):
    text = help_at_80_columns(*command)
    lines = text.splitlines()
    assert len(lines) <= 150, len(lines)
    assert max(map(len, lines)) <= 80
    assert "<bool>" not in text  # a flag takes no value
    assert "…" not in text  # no value cut short


def test_distill_help_groups_its_options_in_panels():
    text = help_at_80_columns("distill")
    panels = ["Teacher and data", "Student", "Method", "Budget", "Compare and tune", "Runtime", "Output"]
    positions = [text.index(f"\n{panel}:\n") for panel in panels]  # a section's heading
    assert positions == sorted(positions)
    # Each method's parameters, with their defaults, read from the method classes.
    flat = " ".join(text.split())
    assert "NAME[:key=value,...]" in flat and "dkd (decoupled KD, Zhao et al.): temperature=4, alpha=1, beta=8, " \
                                              "warmup=20, standardize=false" in flat


def test_commands_are_listed_in_pipeline_order():
    text = help_at_80_columns()
    names = ["train-teacher", "soft-labels", "distill", "evaluate", "export", "info"]
    positions = [text.index(f"\n  {name} ", text.index("\nCommands:\n")) for name in names]
    assert positions == sorted(positions)


def help_sections(text):
    """The sections of a help (`Heading:` then its indented rows) as {heading: [the names each row starts
    with]}: `-q, --quiet` gives -q and --quiet, `--teacher PATH` gives --teacher, `PART <list[Path]>` PART."""
    sections, heading = {}, None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            heading = line[:-1]
            sections[heading] = []
        elif heading and re.match(r"  \S", line):
            names = line.strip().split("  ")[0]
            sections[heading] += [part.split(" ")[0] for part in names.split(", ")]
    return sections


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "kdcli")
def test_every_help_lists_each_option_under_its_panel(command):
    """At 80 columns, every parameter is in the section of its help panel (`rich_help_panel=`, else
    Options or Arguments), the default panels first, and the help is at most 150 lines."""
    from typer.main import get_command

    from kdcli.cli import app

    text = help_at_80_columns(*command)
    assert len(text.splitlines()) <= 150
    assert not re.search(r"<[a-z][^>]*>", text), text  # no Python type placeholders (<str>, <list[Path]>)
    cmd = get_command(app)
    for name in command:
        cmd = cmd.get_command(None, name)
    sections = help_sections(text)
    assert "-h" in sections["Options"] and "--help" in sections["Options"]
    panels = {"Options"}
    for param in cmd.params:
        argument = param.param_type_name == "argument"
        panel = getattr(param, "rich_help_panel", None) or ("Arguments" if argument else "Options")
        panels.add(panel)
        for name in [param.metavar or param.name.upper()] if argument else [*param.opts, *param.secondary_opts]:
            assert name in sections.get(panel, []), (panel, name, text)
    headings = [heading for heading in sections if heading != "Commands"]
    assert set(headings) == panels
    assert headings[:2] == ["Arguments", "Options"] if "Arguments" in panels else headings[:1] == ["Options"]
    assert ("Commands" in sections) == (list(sections)[-1] == "Commands") == hasattr(cmd, "list_commands")


def test_help_imports_neither_numpy_nor_tensorflow():
    """`--help` stays quick: no command's help imports NumPy, TensorFlow, Keras, h5py, Typer's pydantic
    coercion or Rich (the help is plain text), and `import kdcli` alone imports no TensorFlow."""
    code = (
        "import sys\n"
        "from kdcli.cli import app\n"
        "for cmd in ([], ['train-teacher'], ['soft-labels'], ['soft-labels', 'merge'], ['distill'], ['evaluate'],\n"
        "            ['export'], ['info']):\n"
        "    try:\n"
        "        app(cmd + ['--help'], prog_name='kdcli')\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, (cmd, e.code)\n"
        "print(sorted(m for m in ('numpy', 'tensorflow', 'keras', 'pydantic', 'h5py', 'rich') if m in sys.modules),\n"
        "      file=sys.stderr)\n"
        "import kdcli\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    r = _run("-c", code)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "[]", r.stderr


@pytest.mark.slow
def test_a_terminal_sees_a_status_line_while_kdcli_loads_then_the_bar(tmp_path):
    import pty

    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "kdcli", "train-teacher", "--data", "digits", "--arch", "mlp",
                                "--epochs", "1", "--out", str(tmp_path / "t.keras")],
                               stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "100"})
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert process.wait(timeout=300) == 0
    text = seen.decode(errors="replace")
    loading = text.find("loading TensorFlow, the data and the models")
    assert loading >= 0 and text.find("training teacher") > loading
    assert "Traceback" not in text and "live display" not in text
