"""Accuracy of the teacher, the student trained from scratch and the distilled student.

For each data set (the bundled digits, and the MNIST benchmark split when
`../shared/data` is there): one teacher (kdcli's cnn, trained with
train-teacher's defaults, spelled out: `--augment shift --lr-schedule cosine --epochs 40`),
then for each seed and each way of distilling, `kdcli distill --teacher ...
--baseline`, which also trains the same student architecture from scratch,
from the same initial weights, with the same budget and the same inputs:

- logits once: the one-shot default, the teacher's logits for the training
  split computed once; the baseline trains on the plain training split;
- `--augment shift`: every batch randomly shifted, the teacher labelling the
  shifted copies; the baseline trains on shifted copies too.

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

from common import kdcli as run, mnist_split

TEACHER_RECIPE = ("--augment", "shift", "--lr-schedule", "cosine", "--epochs", "40")
WAYS = {"logits once": (), "`--augment shift`": ("--augment", "shift")}


def measure(data, workdir, seeds, student, epochs):
    teacher = Path(run("train-teacher", "--data", data, *TEACHER_RECIPE, "--out", workdir / "teacher.keras"))
    result = {"teacher": kdcli.read_provenance(teacher)["metrics"]["test_accuracy"],
              "teacher_params": kdcli.load_model(teacher).count_params(), "ways": {}}
    for i, (way, args) in enumerate(WAYS.items()):
        rows = []
        for seed in seeds:
            budget = ("--epochs", epochs) if epochs else ()  # else kdcli's default: at least 3,000 steps
            out = run("distill", "--teacher", teacher, "--student", student, *budget, "--seed", seed,
                      *args, "--baseline", "--out", workdir / f"student-{i}-{seed}.keras")
            rows.append(kdcli.read_provenance(out)["metrics"])
        result["ways"][way] = {"scratch": [r["baseline_test_accuracy"] for r in rows],
                               "distilled": [r["test_accuracy"] for r in rows]}
    result["student_params"] = kdcli.load_model(out).count_params()
    result["epochs"] = kdcli.read_provenance(out)["hyperparameters"]["epochs"]
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--student", default="shrink:0.25")
    parser.add_argument("--epochs", type=int, help="default: kdcli's (30, or at least 3,000 steps)")
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
    lines = [
        "## Accuracy: teacher, student from scratch, distilled student",
        "",
        f"Written by `make bench-accuracy` (`benchmarks/accuracy.py`). One teacher per data set: "
        f"`kdcli train-teacher {' '.join(TEACHER_RECIPE)}` (kdcli's cnn). For each seed {args.seeds}: "
        f"`kdcli distill --teacher T --student {args.student}{f' --epochs {args.epochs}' if args.epochs else ''} "
        "--baseline` (epochs as in the table), with the teacher's "
        "logits computed once (the one-shot default) or with `--augment shift`. `--baseline` trains the same "
        "student architecture from scratch, from the same initial weights, with the same budget and the same "
        "inputs (shifted copies too with `--augment shift`). Test accuracy, mean ± standard deviation over the "
        "seeds; the gain is the mean of the per-seed differences.",
        "",
        "| data | teacher | distilled with | student from scratch | distilled student | gain (points) |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        for way, w in r["ways"].items():
            s, d = np.array(w["scratch"]) * 100, np.array(w["distilled"]) * 100
            lines.append(f"| {name}, {r['epochs']} epochs | {100 * r['teacher']:.2f}% ({r['teacher_params']:,} params) | {way} | "
                         f"{s.mean():.2f} ± {s.std():.2f}% | {d.mean():.2f} ± {d.std():.2f}% "
                         f"({r['student_params']:,} params) | {(d - s).mean():+.2f} ({', '.join(f'{g:+.2f}' for g in d - s)}) |")
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
