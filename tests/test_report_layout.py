"""The evaluate report at any terminal width, `format_size`, and the plot's labels.

The reports are built by hand with the shape of `kdcli.evaluation.evaluate_models`,
so these tests need neither TensorFlow models nor a data set.
"""

import io

import pytest
from rich.console import Console

from kdcli import report as rp

LONG = "experiments/2026-11-29/very/long/folder/name/student.keras"


def model(path, accuracy, params, size_bytes, latency_ms, reference=None, baseline=None, kind="student"):
    """One `models` entry as `evaluate_models` makes it."""
    entry = {
        "path": path, "format": "tflite" if path.endswith(".tflite") else "keras", "kind": kind,
        "accuracy": accuracy, "params": params, "trainable_params": None if params is None else params - 21,
        "size_bytes": size_bytes, "latency_ms": latency_ms, "latency_p95_ms": 1.5 * latency_ms,
        "throughput": 77408.0 * 0.4363 / latency_ms, "agreement": 1.0 if reference is None else 0.97214,
        "top5_accuracy": min(1.0, accuracy + 0.0109),
    }
    if baseline is not None:
        entry["baseline_accuracy"] = baseline
        entry["distillation_gain_points"] = 100 * (accuracy - baseline)
    if reference is not None:
        entry["compression"] = reference["params"] / params if reference["params"] and params else None
        entry["size_ratio"] = reference["size_bytes"] / size_bytes
        entry["speedup"] = reference["latency_ms"] / latency_ms
        entry["accuracy_change_points"] = 100 * (accuracy - reference["accuracy"])
    return entry


def make_report(paths, baseline=False):
    """A report on a teacher and one or two students at `paths` (the teacher first)."""
    teacher = model(paths[0], 0.98607, 99181, 446580, 0.4363, kind="teacher")
    students = [
        model(paths[1], 0.96100, 4810, 3_500_000, 0.1620, teacher, baseline=0.93036 if baseline else None),
        model(paths[2], 0.95822, None, 12_288, 0.0871, teacher, kind="export") if len(paths) > 2 else None,
    ]
    return {
        "schema": "kdcli.evaluate/1",
        "data": {"spec": "digits", "options": {}, "fingerprint": "3f2a9c", "n_train": 1438, "n_test": 359,
                 "input_shape": [8, 8, 1], "num_classes": 10, "split": "test"},
        "latency": {
            "method": "200 single-sample calls after 20 warm-up calls, in 5 rounds; median and p95 of the "
                      "quietest round (Keras: a compiled tf.function; TFLite: interpreter.invoke); "
                      "throughput: best of 5 calls at batch 256",
            "runs": 200, "warmup": 20, "rounds": 5, "threads": 2, "tensorflow": "2.21.0",
            "cpu": "Intel(R) Xeon(R) Platinum 8370C CPU @ 2.80GHz", "cpu_count": 2,
        },
        "models": [m for m in (teacher, *students) if m is not None],
    }


REPORTS = {
    "2 models": (["runs/teacher.keras", "runs/student.keras"], False),
    "3 models": (["runs/teacher.keras", "runs/student.keras", "runs/student-int8.tflite"], False),
    "2 models, baseline": (["runs/teacher.keras", "runs/student.keras"], True),
    "3 models, baseline": (["runs/teacher.keras", "runs/student.keras", "runs/student-int8.tflite"], True),
    "3 models, long path, baseline": (["runs/teacher.keras", LONG, "runs/student.keras"], True),
}


def rendered(report, width):
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    rp.render(report, console)
    return console.file.getvalue()


def check_layout(text, report, width):
    """What `render` promises at any width of 80 columns or more."""
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width
    assert "…" not in text
    _, body = rp.rows(report)
    for row in body:
        for cell in row[1:]:  # the model column holds labels; see below
            assert any(cell in line for line in lines), cell
    for label in rp.labels(report):
        assert any(label in line for line in lines), label
    # The legend may fold a long path over several lines, each indented to the
    # path column: the path must appear once the lines are joined without blanks.
    squeezed = "".join(text.split())
    for m in report["models"]:
        assert m["path"] in squeezed, m["path"]
    assert rp.title(report) in text
    assert "".join(rp.footer(report).split()) in squeezed


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize("name", list(REPORTS))
def test_render_fits_any_width(name, width):
    report = make_report(*REPORTS[name])
    check_layout(rendered(report, width), report, width)


def test_the_checks_catch_the_old_table():
    """One table printed at 80 columns, as the CLI did, fails the checks above."""
    report = make_report(*REPORTS["3 models, baseline"])
    console = Console(file=io.StringIO(), width=80, force_terminal=False, color_system=None)
    console.print(rp.table(report))
    with pytest.raises(AssertionError):
        check_layout(console.file.getvalue(), report, 80)


@pytest.mark.parametrize("name", list(REPORTS))
def test_one_table_when_wide(name):
    report = make_report(*REPORTS[name])
    text = rendered(report, 250)
    check_layout(text, report, 250)
    header, _ = rp.rows(report)
    header_lines = [line for line in text.splitlines() if all(column in line for column in header)]
    assert len(header_lines) == 1
    assert text.count("accuracy") == 1 + text.count("Δ accuracy")  # no second table


def test_narrow_splits_and_repeats_model_labels():
    report = make_report(*REPORTS["3 models, baseline"])
    text = rendered(report, 80)
    for label in rp.labels(report):
        assert sum(label in line for line in text.splitlines()) >= 2  # in each table (and the legend)


def test_labels():
    assert rp.labels(make_report(["runs/teacher.keras", "runs/student.keras", "runs/student-int8.tflite"])) == [
        "teacher.keras", "student.keras", "student-int8.tflite"]
    assert rp.labels(make_report(["a/teacher.keras", "a/student.keras", "b/student.keras"])) == [
        "teacher.keras", "a/student.keras", "b/student.keras"]
    assert rp.labels(make_report(["runs/teacher.keras", LONG, "runs/student.keras"])) == [
        "teacher.keras", "name/student.keras", "runs/student.keras"]
    assert rp.labels(make_report(["teacher.keras", "x/student.keras", "y/x/student.keras"])) == [
        "teacher.keras", "x/student.keras", "y/x/student.keras"]


def test_legend_only_for_shortened_paths():
    text = rendered(make_report(["teacher.keras", "student.keras"]), 250)
    assert text.count("teacher.keras") == 1


@pytest.mark.parametrize("n_bytes, text", [
    (512, "512 B"), (int(42.7 * 1024), "42.7 KiB"), (int(3.5 * 1024 ** 2), "3.5 MiB"), (2 * 1024 ** 3, "2.0 GiB"),
    (446580, "436.1 KiB"),
])
def test_format_size(n_bytes, text):
    assert rp.format_size(n_bytes) == text


def test_table_and_markdown_keep_full_paths():
    report = make_report(*REPORTS["3 models, long path, baseline"])
    header, body = rp.rows(report)
    assert body[1][0] == LONG and "from scratch (gain)" in header
    assert f"| {LONG} |" in rp.markdown(report)
    assert rp.table(report).row_count == 3


@pytest.mark.parametrize("paths", [
    REPORTS["3 models"][0],
    REPORTS["3 models, long path, baseline"][0],
    # The old plot, full paths to the right of every point, put this teacher's outside the figure.
    ["experiments/2026-11-29/very/long/folder/name/teacher-with-a-long-name.keras", LONG],
])
def test_plot_labels_inside_the_figure(paths, tmp_path):
    pytest.importorskip("matplotlib")
    report = make_report(paths, baseline=True)
    fig = rp.figure(report)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    annotations = [t for t in fig.axes[0].texts]
    assert [t.get_text() for t in annotations] == rp.labels(report)
    for t in annotations:
        box = t.get_window_extent(renderer)
        assert (fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1), (
            t.get_text(), box, fig.bbox)
    rp.plot(report, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_split_table_is_titled():
    report = make_report(*REPORTS["3 models, baseline"])
    text = rendered(report, 80)
    tables = text.count("┏")  # each table's top left corner
    assert tables > 2  # the split layout, with its groups split further at 80 columns
    titles = [line.strip() for line in text.splitlines() if line.strip().startswith(("accuracy", "size and speed"))]
    assert len(titles) == tables, titles
    assert "size and speed (1 of" in text


def test_differences_agree_with_the_rounded_values_shown():
    # 98.26% against 98.34% is -0.08 points, which alone would round to -0.1; both show as 98.3%.
    teacher = model("t.keras", 0.9834, 1000, 4000, 1.0, kind="teacher")
    student = model("s.keras", 0.9826, 100, 400, 0.5, teacher, baseline=0.9774)
    report = {**make_report(["t.keras", "s.keras"]), "models": [teacher, student]}
    header, body = rp.rows(report)
    row = dict(zip(header, body[1]))
    assert (row["accuracy"], row["Δ accuracy"]) == ("98.3%", "+0.0 pts")
    assert row["from scratch (gain)"] == "97.7% (+0.6 pts)"  # 98.3 - 97.7, where 0.9826 - 0.9774 is 0.52


def test_parameter_ratio_and_file_size_ratio_are_told_apart():
    report = make_report(*REPORTS["3 models"])
    header, body = rp.rows(report)
    export = dict(zip(header, body[2]))
    assert export["fewer params"] == "—"  # a .tflite file counts no parameters here
    assert export["smaller file"] == f"{446580 / 12_288:.1f}x"
    student = dict(zip(header, body[1]))
    assert student["fewer params"] == f"{99181 / 4810:.1f}x" and student["smaller file"] == f"{446580 / 3_500_000:.1f}x"


@pytest.mark.parametrize("points, decimals, spread, text", [
    (0.43, 1, None, "distillation gained 0.4 points"),
    (-0.31, 1, None, "distillation lost 0.3 points"),
    (-0.04, 1, None, "distillation gained 0.0 points"),  # rounds to nothing lost
    (-1.234, 2, 0.5, "distillation lost 1.23 ± 0.50 points"),
])
def test_a_negative_gain_reads_lost(points, decimals, spread, text):
    assert rp.gain_phrase(points, decimals, spread) == text


@pytest.mark.parametrize("points, noise, advice", [
    (0.4, None, ""),
    (-0.04, None, ""),  # shown as a gain of 0.0
    (-0.6, 0.8, ""),  # within the seeds' noise
    (-1.2, 0.3, ", beyond the seeds' noise; " + rp.NEXT_STEP),
    (-1.2, None, " (one seed: --seeds 3 tells a loss from noise); " + rp.NEXT_STEP),
])
def test_a_loss_says_what_to_try(points, noise, advice):
    assert rp.loss_advice(points, noise) == advice
    assert "--tune" in rp.NEXT_STEP and "--patience" in rp.NEXT_STEP


def test_evaluate_says_when_distillation_lost():
    report = make_report(["runs/teacher.keras", "runs/student.keras"], baseline=True)
    student = report["models"][1]
    assert "lost" not in rendered(report, 200)  # a gain of 3.1 points: nothing to say
    student["baseline_accuracy"] = 0.97493
    student["distillation_gain_points"] = 100 * (student["accuracy"] - student["baseline_accuracy"])
    text = " ".join(rendered(report, 200).split())
    assert "runs/student.keras: distillation lost 1.4 points against the same student trained from scratch" in text
    assert "--tune 8" in text and "--patience" in text
