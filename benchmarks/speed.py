"""kdcli's speed benchmarks; `make bench` runs this and writes BENCHMARKS.md.

Every comparison is measured side by side in one run, on the same machine,
and reported as a ratio of medians: the machine is shared and noisy, so
absolute times mean little and ratios from one run are what to compare.

    python benchmarks/speed.py [--out BENCHMARKS.md] [--quick]

Data: the MNIST benchmark split of ../shared/data (8,000 training and 2,000
test images, 28x28) when it is there, else the bundled digits. The sections
of the other benchmarks (`scale.py`'s 1,000,000 rows, `steps.py`, the
accuracy benchmarks) follow from their own markdown files.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import kdcli
from kdcli.options import Budget
from kdcli.soft_labels import teacher_logits

from common import ROOT, mnist_split, timed_process, verdict

REPEATS = 3


def median(values):
    return statistics.median(values)


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def fit_epoch_times(model, data, epochs, batch_size):
    """Plain Keras: compile and fit on hard labels; the seconds of each epoch."""
    import keras

    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.started)

    x, y = data.train.arrays()
    model.fit(x.astype("float32"), y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[Timer()])
    return times


def bench_epoch_vs_fit(data, soft, students, epochs, batch_size=64):
    """Target: an offline distill epoch costs at most 1.10x a plain fit epoch of the same student."""
    rows = []
    for spec in students:
        ours, fits = [], []
        for repeat in range(REPEATS):  # interleaved, so drifts in machine load hit both alike
            teacher = kdcli.load_model(soft["teacher"]) if spec.startswith("shrink") else None
            student = kdcli.build_from_spec(spec, data, seed=repeat, teacher=teacher)
            history = kdcli.distill(student, data, teacher_logits=teacher_logits(soft["path"]),
                                    epochs=epochs, batch_size=batch_size, seed=repeat)
            ours.append(min(history["epoch_seconds"][1:]))  # the first epoch traces the step
            twin = kdcli.build_from_spec(spec, data, seed=repeat, teacher=teacher)
            fits.append(min(fit_epoch_times(twin, data, epochs, batch_size)[1:]))
        rows.append({"student": spec, "params": student.count_params(), "distill_epoch_s": median(ours),
                     "fit_epoch_s": median(fits), "ratio": median(ours) / median(fits)})
    return rows


def bench_soft_labels_vs_predict(data, teacher_path, workdir):
    """Target: soft-labels costs at most 1.15x the teacher's own predict (model loading excluded)."""
    from kdcli import pipeline

    teacher = kdcli.load_model(teacher_path)
    x, _ = data.train.arrays()
    x = x.astype("float32")
    ours, predicts = [], []
    for _ in range(REPEATS):
        started = time.perf_counter()
        teacher.predict(x, batch_size=256, verbose=0)
        predicts.append(time.perf_counter() - started)
        started = time.perf_counter()
        pipeline.make_soft_labels(teacher_path, data, workdir / "soft-bench.h5")
        ours.append(time.perf_counter() - started)
    # make_soft_labels also loads the teacher: time that alone and take it out
    loads = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        kdcli.load_model(teacher_path)
        loads.append(time.perf_counter() - started)
    soft_s = median(ours) - median(loads)
    return {"soft_labels_s": soft_s, "predict_s": median(predicts), "ratio": soft_s / median(predicts),
            "samples": len(x)}


def bench_vs_distiller(data, soft, student_spec, epochs, batch_size=64, seeds=(0, 1, 2)):
    """Target: soft-labels + offline distill is at least 3x faster than keras.distillation.Distiller online.

    Times are medians over the seeds; accuracies are means, since one run's differs from
    another's by its shuffling alone.
    """
    import keras

    from kdcli import pipeline

    teacher_path = soft["teacher"]
    teacher = kdcli.logits_model(kdcli.load_model(teacher_path))
    x, y = data.train.arrays()
    x_test, y_test = data.test.arrays()
    ours_acc, online_acc, ours_times, online_times = [], [], [], []
    for seed in seeds:
        started = time.perf_counter()
        pipeline.make_soft_labels(teacher_path, data, soft["dir"] / "soft-vs.h5")
        _, metrics = pipeline.distill_student(data, soft["dir"] / "student-vs.keras",
                                              soft_labels=soft["dir"] / "soft-vs.h5", student=student_spec,
                                              budget=Budget(epochs=epochs, batch_size=batch_size, seed=seed))
        ours_times.append(time.perf_counter() - started)
        ours_acc.append(metrics["test_accuracy"])

        student = kdcli.build_from_spec(student_spec, data, seed=seed, teacher=teacher)
        distiller = keras.distillation.Distiller(
            teacher=teacher, student=student,
            distillation_losses=keras.distillation.LogitsDistillation(temperature=4.0,
                                                                      loss=keras.losses.KLDivergence()),
            student_loss_weight=0.1,  # alpha = 0.9 on the distillation term, as kdcli's default
        )
        distiller.compile(optimizer=keras.optimizers.Adam(1e-3),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        started = time.perf_counter()
        distiller.fit(x.astype("float32"), y, batch_size=batch_size, epochs=epochs, verbose=0)
        online_times.append(time.perf_counter() - started)
        online_acc.append(float(np.mean(np.argmax(student.predict(x_test.astype("float32"), verbose=0), -1) == y_test)))

    # the teacher's cost per sample against the student's, from batched inference
    def infer_s(model):
        model.predict(x[:512].astype("float32"), verbose=0)
        started = time.perf_counter()
        model.predict(x.astype("float32"), batch_size=256, verbose=0)
        return time.perf_counter() - started

    ours_s, online_s = median(ours_times), median(online_times)
    return {"kdcli_s": ours_s, "distiller_s": online_s, "speedup": online_s / ours_s,
            "kdcli_accuracy": float(np.mean(ours_acc)), "distiller_accuracy": float(np.mean(online_acc)),
            "kdcli_accuracies": ours_acc, "distiller_accuracies": online_acc, "seeds": list(seeds),
            "teacher_cost_ratio": infer_s(teacher) / infer_s(student), "epochs": epochs, "student": student_spec}


def process_seconds(*args):
    """The whole wall time of a process, from its start to its exit, as a user waits for it."""
    return timed_process(*args)[0]


def slope(run, low, high, repeats=2):
    """Seconds per epoch of a command as the slope between two epoch counts, each the best of
    `repeats` whole runs (interleaved, so drifts in machine load hit both alike), and those bests."""
    lows, highs = [], []
    for _ in range(repeats):
        lows.append(run(low))
        highs.append(run(high))
    return (min(highs) - min(lows)) / (high - low), min(lows), min(highs)


def bench_whole_process(data_value, soft, student, workdir, low=4, high=24):
    """What a user waits for, whole processes: kdcli's offline distill against plain model.fit and
    keras.distillation's online Distiller (per epoch, as slopes), and soft-labels against the
    teacher's own predict (whole commands, best of 3, interleaved).

    Targets: offline distill at most 1.10x fit per epoch; at least 5x faster than the Distiller;
    soft-labels at most 1.10x predict.
    """
    here = Path(__file__).resolve().parent
    kdcli_cli = ("-m", "kdcli")

    def ours(epochs):
        return process_seconds(*kdcli_cli, "distill", "--soft-labels", soft["path"], "--data", data_value,
                               "--student", student, "--epochs", epochs, "--out", workdir / "whole.keras", "--quiet")

    def fit(epochs):
        return process_seconds(here / "processes.py", "fit", data_value, student, epochs)

    def online(epochs):
        return process_seconds(here / "processes.py", "distiller", data_value, soft["teacher"], epochs)

    rows = {name: slope(run, low, high) for name, run in (("fit", fit), ("distill", ours), ("distiller", online))}
    soft_runs, predict_runs = [], []
    for _ in range(3):  # interleaved, so that drifts in machine load hit both alike
        soft_runs.append(process_seconds(*kdcli_cli, "soft-labels", "--teacher", soft["teacher"], "--data",
                                         data_value, "--out", workdir / "whole-soft.h5", "--quiet"))
        predict_runs.append(process_seconds(here / "processes.py", "predict", data_value, soft["teacher"]))
    soft_labels, predict = min(soft_runs), min(predict_runs)
    return {"epochs": [low, high], "student": student, "per_epoch": {k: v[0] for k, v in rows.items()},
            "runs": {k: {"low_s": v[1], "high_s": v[2]} for k, v in rows.items()},
            "distill_vs_fit": rows["distill"][0] / rows["fit"][0],
            "distiller_vs_distill": rows["distiller"][0] / rows["distill"][0],
            "soft_labels_s": soft_labels, "predict_s": predict, "soft_labels_vs_predict": soft_labels / predict}


def bench_help():
    """Target: kdcli --help answers in under 0.5 s."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kdcli", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return {"help_s": median(times)}


def bench_compact(data, soft, student_spec, epochs):
    """File sizes and distilled accuracy: float32 logits, float16, top-k."""
    from kdcli import pipeline

    rows = []
    for name, options in [("float32", {}), ("float16", {"dtype": "float16"}), ("top-3, float16", {"dtype": "float16", "top_k": 3}),
                          ("top-1, float16", {"dtype": "float16", "top_k": 1})]:
        path = soft["dir"] / f"compact-{name.replace(' ', '').replace(',', '-')}.h5"
        pipeline.make_soft_labels(soft["teacher"], data, path, **options)
        _, metrics = pipeline.distill_student(data, soft["dir"] / "compact.keras", soft_labels=path,
                                              student=student_spec, budget=Budget(epochs=epochs))
        rows.append({"soft_labels": name, "bytes": path.stat().st_size, "accuracy": metrics["test_accuracy"]})
    return rows


def bench_mixed_precision(data, soft, student_spec, epochs):
    """bf16 against float32: epoch time and accuracy of a teacher and of a distilled student."""
    rows = []
    for precision in ("off", "bf16"):
        teacher = kdcli.build_from_spec("cnn", data, role="teacher", seed=0, mixed_precision=precision)
        history = kdcli.train(teacher, data, epochs=epochs, seed=0)
        from kdcli.inference import accuracy

        teacher_row = {"precision": precision, "model": "teacher cnn", "epoch_s": min(history["epoch_seconds"][1:]),
                       "accuracy": accuracy(teacher, data.test)}
        base = kdcli.load_model(soft["teacher"])
        student = kdcli.build_from_spec(student_spec, data, seed=0, teacher=base, mixed_precision=precision)
        history = kdcli.distill(student, data, teacher_logits=teacher_logits(soft["path"]), epochs=epochs, seed=0)
        rows += [teacher_row, {"precision": precision, "model": f"student {student_spec}",
                               "epoch_s": min(history["epoch_seconds"][1:]), "accuracy": accuracy(student, data.test)}]
    return rows


def whole_process_section(w, ok):
    """The Markdown of `bench_whole_process`: the claims, measured as a user waits."""
    low, high = w["epochs"]
    per, runs = w["per_epoch"], w["runs"]
    rows = [(name, label) for name, label in (
        ("fit", f"plain `model.fit` of the same `{w['student']}` student, hard labels (`benchmarks/processes.py fit`)"),
        ("distill", "`kdcli distill --soft-labels` (offline), the whole command"),
        ("distiller", "keras.distillation `Distiller`, online (`benchmarks/processes.py distiller`)"))]
    out = [
        "## What a user waits for: whole processes",
        "",
        f"Each command runs as its own process, timed from start to exit, at {low} and {high} epochs; the per-epoch "
        f"cost is the slope between the two, each the best of 2 runs (interleaved). Data and batch (64) are the "
        f"same for all; the references load the data as kdcli does and keep it in memory.",
        "",
        f"| process | {low} epochs (s) | {high} epochs (s) | per epoch (s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    out += [f"| {label} | {runs[name]['low_s']:.1f} | {runs[name]['high_s']:.1f} | {per[name]:.3f} |"
            for name, label in rows]
    out += [
        "",
        "| claim | measured | target | |",
        "| --- | ---: | --- | --- |",
        f"| offline distill per epoch against `fit` | {w['distill_vs_fit']:.2f}x | at most 1.10x | "
        f"{ok(w['distill_vs_fit'] <= 1.10)} |",
        f"| `Distiller` per epoch against offline distill | {w['distiller_vs_distill']:.1f}x slower | at least 5x | "
        f"{ok(w['distiller_vs_distill'] >= 5)} |",
        f"| `kdcli soft-labels` against the teacher's `predict`, whole processes, best of 3 ({w['soft_labels_s']:.1f} s, "
        f"{w['predict_s']:.1f} s) | {w['soft_labels_vs_predict']:.2f}x | at most 1.10x | "
        f"{ok(w['soft_labels_vs_predict'] <= 1.10)} |",
        "",
    ]
    return out


def markdown(results, machine):
    ok = verdict
    out = [
        "# kdcli benchmarks",
        "",
        f"Written by `make bench` (`benchmarks/speed.py`) on {machine['date']}. Machine: {machine['cpu']}, "
        f"{machine['cores']} cores, Python {machine['python']}, TensorFlow {machine['tensorflow']}, "
        f"Keras {machine['keras']}. Data: {machine['data']}. Each time is a median over {REPEATS} runs; an epoch time "
        "is the fastest of epochs 2 and later of a run (on this shared machine epoch times jump between two levels, "
        "about 2x apart, for kdcli and Keras alike; the fastest epoch is what the work costs). Ratios compare runs "
        "made side by side in this one run.",
        "",
        *whole_process_section(results["whole_process"], ok),
        "## Offline distill epoch against a plain Keras fit epoch (a diagnostic, timed inside the loop)",
        "",
        "Target: an offline `distill` epoch (teacher logits from the soft-label file, as `kdcli distill` reads "
        "them) costs at most 1.10x a `model.fit` epoch of the same student on hard labels, batch 64.",
        "",
        "| student | params | distill epoch (s) | fit epoch (s) | ratio | target ≤ 1.10 |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results["epoch_vs_fit"]:
        out.append(f"| {r['student']} | {r['params']:,} | {r['distill_epoch_s']:.3f} | {r['fit_epoch_s']:.3f} | "
                   f"{r['ratio']:.2f}x | {ok(r['ratio'] <= 1.10)} |")
    d = results["vs_distiller"]
    out += [
        "",
        "## kdcli against online distillation with keras.distillation.Distiller",
        "",
        f"`soft-labels` + offline `distill` against `Distiller` with `LogitsDistillation(temperature=4, "
        f"loss=keras.losses.KLDivergence())` and `student_loss_weight=0.1`; same teacher, student "
        f"(`{d['student']}`), data, {d['epochs']} epochs, batch 64. The teacher costs {d['teacher_cost_ratio']:.1f}x "
        f"the student per sample (batched inference). Median times and mean accuracies over seeds "
        f"{d['seeds']} (kdcli: {', '.join(f'{100 * a:.2f}' for a in d['kdcli_accuracies'])}%; Distiller: "
        f"{', '.join(f'{100 * a:.2f}' for a in d['distiller_accuracies'])}%).",
        "",
        "| | kdcli | Distiller | speedup | target ≥ 3x |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| time (s) | {d['kdcli_s']:.1f} | {d['distiller_s']:.1f} | {d['speedup']:.1f}x | {ok(d['speedup'] >= 3)} |",
        f"| student test accuracy, mean | {100 * d['kdcli_accuracy']:.2f}% | {100 * d['distiller_accuracy']:.2f}% | "
        f"Δ {100 * (d['kdcli_accuracy'] - d['distiller_accuracy']):+.2f} pts | "
        f"{ok(abs(d['kdcli_accuracy'] - d['distiller_accuracy']) <= 0.005)} (within 0.5) |",
    ]
    s = results["soft_vs_predict"]
    out += [
        "",
        "## soft-labels against the teacher's own predict",
        "",
        f"{s['samples']:,} training samples, teacher loading excluded.",
        "",
        "| soft-labels (s) | teacher.predict (s) | ratio | target ≤ 1.15 |",
        "| ---: | ---: | ---: | --- |",
        f"| {s['soft_labels_s']:.2f} | {s['predict_s']:.2f} | {s['ratio']:.2f}x | {ok(s['ratio'] <= 1.15)} |",
        "",
        "## kdcli --help",
        "",
        f"Median of 5 runs of `python -m kdcli --help`: {results['help']['help_s']:.2f} s "
        f"(target < 0.5 s: {ok(results['help']['help_s'] < 0.5)}).",
        "",
        "## Compact soft labels",
        "",
        "The same teacher's soft labels stored four ways, and the student distilled from each (same seed and budget).",
        "",
        "| soft labels | file size | distilled student test accuracy |",
        "| --- | ---: | ---: |",
    ]
    for r in results["compact"]:
        out.append(f"| {r['soft_labels']} | {r['bytes'] / 1024:.0f} KiB | {100 * r['accuracy']:.2f}% |")
    out += [
        "",
        "## Mixed precision (bf16) on this CPU",
        "",
        "| model | precision | epoch (s) | test accuracy |",
        "| --- | --- | ---: | ---: |",
    ]
    for r in results["mixed_precision"]:
        out.append(f"| {r['model']} | {r['precision']} | {r['epoch_s']:.2f} | {100 * r['accuracy']:.2f}% |")
    for name in ("defaults.md", "stopping.md", "teacher_arch.md", "accuracy.md", "budgets.md", "teachers.md",
                 "paying.md", "teacher_kinds.md",
                 "compress.md", "tune_engine.md", "steps.md", "scale.md"):  # the other benchmarks' sections; one not written yet is left out
        section = ROOT / "benchmarks" / name
        if section.exists():
            out += ["", section.read_text().strip()]
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--json", help="also keep the raw numbers here")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for a smoke test")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: write --out from the raw numbers a "
                        "run kept with --json and the accuracy sections as they are now")
    args = parser.parse_args()
    if args.render:
        kept = json.loads(Path(args.render).read_text())
        Path(args.out).write_text(markdown(kept["results"], kept["machine"]))
        return
    import keras
    import tensorflow as tf

    epochs = 2 if args.quick else 30
    timed_epochs = 3 if args.quick else 6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mnist = mnist_split(tmp / "mnist.npz")
        if mnist is None:
            print("../shared/data is not here: the MNIST rows are measured on digits instead", file=sys.stderr)
        data = kdcli.load_data(mnist or "digits")
        machine = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(),
                   "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
                   "data": "MNIST benchmark split (8,000 train / 2,000 test)" if mnist else "digits (MNIST absent)"}
        from kdcli import pipeline

        def step(name):
            print(f"[{time.strftime('%H:%M:%S')}] {name}", file=sys.stderr, flush=True)

        step("teacher")
        teacher = tmp / "teacher.keras"
        pipeline.train_teacher(data, teacher, budget=Budget(epochs=2 if args.quick else 5, lr_schedule="cosine",
                                                            augment="auto"))
        soft = {"teacher": teacher, "path": tmp / "soft.h5", "dir": tmp}
        pipeline.make_soft_labels(teacher, data, soft["path"])
        results = {}
        step("whole processes")
        results["whole_process"] = bench_whole_process(str(mnist or "digits"), soft, "mlp", tmp)
        step("epoch vs fit")
        results["epoch_vs_fit"] = bench_epoch_vs_fit(data, soft, ["mlp", "shrink:0.25"], timed_epochs)
        step("soft-labels vs predict")
        results["soft_vs_predict"] = bench_soft_labels_vs_predict(data, teacher, tmp)
        step("vs Distiller")
        results["vs_distiller"] = bench_vs_distiller(data, soft, "mlp", epochs)
        step("help")
        results["help"] = bench_help()
        step("compact soft labels")
        results["compact"] = bench_compact(data, soft, "mlp", epochs)
        step("mixed precision")
        results["mixed_precision"] = bench_mixed_precision(data, soft, "shrink:0.25", timed_epochs)
    Path(args.out).write_text(markdown(results, machine))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=2, default=float))
    step(f"wrote {args.out}")


if __name__ == "__main__":
    main()
