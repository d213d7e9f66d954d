"""The teacher's architecture for 1-D signals: which built-in family `--arch auto` should pick.

For each narrow 1-D data set of `datasets.py` (`motifs`: shifted motif
templates, 64x1; `tones`: frequencies under noise, 128x1; `mixture`: noisy mixtures of
smooth curves, 40x1) and each seed: `kdcli train-teacher --data D --arch A
--seed S` with every other option at its default, for A in mlp and cnn (on
samples `(L, C)` the cnn convolves along the time axis). Records the test
accuracy, the parameters and the command's wall time. A grid.py `Grid`: cells
are saved as they are measured and a rerun measures only the missing ones.

    python benchmarks/teacher_arch.py [--sets motifs tones mixture] [--archs mlp cnn] [--seeds 0 1 2]
        [--workdir DIR] [--json teacher_arch.json] [--markdown teacher_arch.md] [--render]
"""

import time
from pathlib import Path

import grid
import numpy as np

import kdcli

import datasets
from common import kdcli as run, points

HERE = Path(__file__).resolve().parent
SETS = ("motifs", "tones", "mixture")
ARCHS = ("mlp", "cnn")


def measure_all(cells):
    """Measure the missing cells of the Grid `cells`."""
    def cell(name, arch, seed):
        folder = cells.folder(name)
        data = folder / f"{name}.npz"
        if not data.exists():
            datasets.GENERATORS[name](data, seed=0)
        out = folder / f"teacher-{arch}-{seed}.keras"
        started = time.perf_counter()
        run("train-teacher", "--data", data, "--arch", arch, "--seed", seed, "--out", out)
        record = {"accuracy": kdcli.read_provenance(out)["metrics"]["test_accuracy"],
                  "params": kdcli.load_model(out).count_params(), "seconds": time.perf_counter() - started}
        print(f"{name} / {arch} / seed {seed}: {record}", flush=True)
        return record

    cells.run(cell)


def markdown(results, seeds):
    """The Markdown section: per set and architecture, the mean accuracy, each seed's, and cnn − mlp."""
    lines = [
        "## The teacher's architecture for 1-D signals",
        "",
        "Written by `benchmarks/teacher_arch.py`: `kdcli train-teacher --data D --arch A --seed S` with every "
        "other option at its default, on the 1-D sets of `benchmarks/datasets.py`. Test accuracy, mean ± "
        "standard deviation over the seeds, each seed's in brackets; wall time of the whole command, mean "
        "over the seeds.",
        "",
        "| data | arch | parameters | test accuracy | cnn − mlp (points) | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, r in results.items():
        accuracies = {}
        for arch in ARCHS:
            records = [r["runs"][arch][str(s)] for s in seeds if str(s) in r["runs"].get(arch, {})]
            if not records:
                continue
            a = accuracies[arch] = np.array([x["accuracy"] for x in records]) * 100
            gap = ""
            if arch == "cnn" and "mlp" in accuracies and len(accuracies["mlp"]) == len(a):
                d = a - accuracies["mlp"]
                gap = f"{points(d.mean())} ({', '.join(points(g) for g in d)})"
            lines.append(f"| {name} | {arch} | {records[0]['params']:,} | {a.mean():.2f} ± {a.std():.2f}% "
                         f"({', '.join(f'{v:.1f}' for v in a)}) | {gap} | "
                         f"{np.mean([x['seconds'] for x in records]):.0f} |")
    return lines


def main():
    parser = grid.parser(__doc__.splitlines()[0], SETS, list(ARCHS), json_default=HERE / "teacher_arch.json",
                         keeps="data and teachers", variants_name="archs")
    args = parser.parse_args()
    cells = grid.Grid(args.json, args.sets, args.archs, args.seeds, seeds_first=True, workdir=args.workdir)
    if not args.render:
        measure_all(cells)
    results = {name: cells.results[name] for name in SETS if cells.results.get(name, {}).get("runs")}
    grid.write_section(markdown(results, args.seeds), args.markdown)


if __name__ == "__main__":
    main()
