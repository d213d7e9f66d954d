"""Accuracy of the teacher, the student trained from scratch and the distilled student, per loss.

For each data set (the bundled digits, and the MNIST benchmark split when
`../shared/data` is there): one teacher (kdcli's cnn, trained with
train-teacher's defaults, spelled out: `--augment shift --lr-schedule cosine --epochs 40`),
then for each seed and each way of distilling (WAYS: the extra options of
`kdcli distill --teacher ...`), a distilled student and the same student
architecture trained from scratch (`--baseline`: from the same initial
weights, with the same budget and the same inputs).

The ways without `--augment` compute the teacher's logits once and differ
only in the loss, so their scratch students are one and the same model for a
given seed (same seed, initial weights, data and budget): the first of them
trains it with `--baseline` and the others reuse its accuracy. A way with
`--augment` keeps its own `--baseline`, which trains on shifted copies too.

Prints a Markdown table of means and standard deviations over the seeds;
`--json PATH` keeps the raw numbers.

    python benchmarks/accuracy.py [--seeds 0 1 2] [--student shrink:0.25] [--markdown accuracy.md] [--json out.json]
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import kdcli

from common import kdcli as run, mnist_split, points

TEACHER_RECIPE = ("--augment", "shift", "--lr-schedule", "cosine", "--epochs", "40")
# Way of distilling -> the extra options of `kdcli distill`.
WAYS = {
    "kd": ("--method", "kd"),
    "kd + standardised": ("--method", "kd:standardize=true,temperature=2"),
    "dkd": ("--method", "dkd"),
    "dkd + standardised": ("--method", "dkd:standardize=true"),
    "dist": ("--method", "dist"),
    "kd + `--augment shift`": ("--method", "kd", "--augment", "shift"),
}


def own_baseline(args):
    """Whether a way's scratch student differs from the logits-once ways' (it trains on shifted copies)."""
    return "--augment" in args


def measure(data, workdir, seeds, student, epochs):
    teacher = Path(run("train-teacher", "--data", data, *TEACHER_RECIPE, "--out", workdir / "teacher.keras"))
    result = {"teacher": kdcli.read_provenance(teacher)["metrics"]["test_accuracy"],
              "teacher_params": kdcli.load_model(teacher).count_params(), "ways": {}}
    budget = ("--epochs", epochs) if epochs else ()  # else kdcli's default: --epochs auto
    shared_scratch = {}  # seed -> accuracy of the logits-once ways' scratch student
    for i, (way, args) in enumerate(WAYS.items()):
        scratch, distilled = [], []
        for seed in seeds:
            baseline = own_baseline(args) or seed not in shared_scratch
            out = run("distill", "--teacher", teacher, "--student", student, *budget, "--seed", seed, *args,
                      *(["--baseline"] if baseline else []), "--out", workdir / f"student-{i}-{seed}.keras")
            metrics = kdcli.read_provenance(out)["metrics"]
            if baseline and not own_baseline(args):
                shared_scratch[seed] = metrics["baseline_test_accuracy"]
            scratch.append(metrics["baseline_test_accuracy"] if own_baseline(args) else shared_scratch[seed])
            distilled.append(metrics["test_accuracy"])
        result["ways"][way] = {"args": list(args), "shared_scratch": not own_baseline(args),
                               "scratch": scratch, "distilled": distilled}
    result["student_params"] = kdcli.load_model(out).count_params()
    result["epochs"] = kdcli.read_provenance(out)["hyperparameters"]["epochs"]
    return result


def markdown(results, seeds, student, epochs):
    """The Markdown heading, description and table of `results`, as a list of lines."""
    command = f"kdcli distill --teacher T --student {student}{f' --epochs {epochs}' if epochs else ''}"
    budget = (f"{epochs} epochs" if epochs
              else "kdcli's default (`--epochs auto`: stop when a 10% validation split stops improving)")
    budgets = " and ".join(f"{r['epochs']} epochs on {name}" for name, r in results.items())
    shared = [w for w, a in WAYS.items() if not own_baseline(a)]
    lines = [
        "## Accuracy: teacher, student from scratch, distilled student",
        "",
        f"Written by `make bench-accuracy` (`benchmarks/accuracy.py`). One teacher per data set: "
        f"`kdcli train-teacher {' '.join(TEACHER_RECIPE)}` (kdcli's cnn). For each seed {seeds} and each row: "
        f"`{command} --seed S` plus the row's options: "
        + "; ".join(f"{way}: `{' '.join(a)}`" for way, a in WAYS.items())
        + f". Budget: {budget}, here {budgets}; each method's other options at their defaults. "
        "The student from scratch is the same "
        "student architecture trained on the hard labels alone, from the same initial weights, with the same "
        f"budget and the same inputs. The rows without `--augment` ({', '.join(shared)}) compute the teacher's "
        "logits once and differ only in the loss, so their student from scratch is one and the same model for "
        "a given seed: it is trained once per seed (`--baseline` on the first of these rows) and its accuracy "
        "reused for the others. The `--augment shift` row keeps its own `--baseline`, which trains on shifted "
        "copies too. Test accuracy, mean ± standard deviation over the seeds; the gain is the mean of the "
        "per-seed differences (each seed's in brackets).",
        "",
        "| data | teacher | distilled with | student from scratch | distilled student | gain (points) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for way, w in r["ways"].items():
            s, d = np.array(w["scratch"]) * 100, np.array(w["distilled"]) * 100
            lines.append(f"| {name}, {r['epochs']} epochs | {100 * r['teacher']:.2f}% ({r['teacher_params']:,} params) | "
                         f"{way} (`{' '.join(w['args'])}`) | {s.mean():.2f} ± {s.std():.2f}% | "
                         f"{d.mean():.2f} ± {d.std():.2f}% ({r['student_params']:,} params) | "
                         f"{points((d - s).mean())} ({', '.join(points(g) for g in d - s)}) |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--student", default="shrink:0.25")
    parser.add_argument("--epochs", type=int, help="default: kdcli's (--epochs auto)")
    parser.add_argument("--json")
    parser.add_argument("--markdown", help="also write the table, with a heading, to this file")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sets = {"digits": "digits", "mnist (8k/2k split)": mnist_split(tmp / "mnist.npz")}
        for i, (name, data) in enumerate(sets.items()):
            if data is None:
                print(f"skipping {name}: ../shared/data is not there")
                continue
            (tmp / str(i)).mkdir()
            results[name] = measure(data, tmp / str(i), args.seeds, args.student, args.epochs)
    lines = markdown(results, args.seeds, args.student, args.epochs)
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
