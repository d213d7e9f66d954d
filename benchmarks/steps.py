"""Several steps per compiled call, as whole processes: offline `kdcli distill` before and after
(f23b1c5: one step a call, the pipeline rebuilt every epoch; HEAD: a while loop of K steps a call over
one pipeline for the run, K automatic, and HEAD with `--xla`) against plain Keras `model.fit` with
steps_per_execution 1, 32 and 128, and 128 with jit_compile (`processes.py fit`), and for the mlp student
against keras.distillation's online Distiller, per epoch as slopes between two epoch counts; then
`kdcli soft-labels` before and after against the teacher's own `predict`.

    python benchmarks/steps.py [--workdir DIR] [--students mlp shrink:0.25 cnn] [--low 4 --high 24]
                               [--json steps.json --markdown steps.md] [--render steps.json]

Each kdcli version runs from its own git worktree (`git worktree add --detach`), as
`PYTHONPATH=WORKTREE python -m kdcli ...` from a directory outside the repository, so that it imports
that worktree's kdcli; the Keras processes import HEAD's. Every process is timed from its start to its exit;
the per-epoch cost is (t_high − t_low) / (high − low), each t the best of 2 runs. The runs of one student
are interleaved (every configuration at low, then every one at high, twice), so drifts in the load of this
shared machine hit all of them alike; the load average is recorded beside every run.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, mnist_split

HERE = Path(__file__).resolve().parent
BEFORE = "f23b1c5"
FITS = (1, 32, 128)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def worktree(path, commit):
    """A detached worktree of ROOT at `commit` in `path` (made afresh unless one at that commit is there);
    its HEAD commit."""
    def head(where, name="HEAD"):
        return subprocess.run(["git", "-C", str(where), "rev-parse", "--short", name], capture_output=True,
                              text=True).stdout.strip()

    if not (path / "kdcli" / "__init__.py").exists() or head(path) != head(ROOT, commit):
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                       capture_output=True)
    return head(path)


def process(tree, workdir, *args):
    """Run `python ARGS` with `tree`'s kdcli first on the path, from `workdir`: the whole wall time, start to
    exit, the 1-minute load average just before it started, and the CPU seconds (user and system, all its
    threads) it used."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    r = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=workdir, env=env)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed: {r.stderr.strip().splitlines()[-3:]}")
    return seconds, load, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def imported_from(tree, workdir):
    """Where `import kdcli` resolves with `tree` on PYTHONPATH, from `workdir` (the check that the right
    version runs)."""
    return subprocess.run([sys.executable, "-c", "import kdcli; print(kdcli.__file__)"], cwd=workdir,
                          env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True,
                          check=True).stdout.strip()


def prepare(workdir, after, data=None):
    """The MNIST split (or `data`), a teacher (5 epochs) and its soft labels."""
    data = Path(data).resolve() if data else workdir / "mnist.npz"
    if not data.exists() and mnist_split(data) is None:
        raise SystemExit("../shared/data/mnist-t10k is not here: give --data")
    teacher, soft = workdir / "T.keras", workdir / "soft.h5"
    if not teacher.exists():
        process(after, workdir, "-m", "kdcli", "train-teacher", "--data", data, "--epochs", 5, "--out", teacher,
                "--quiet")
    if not soft.exists():
        process(after, workdir, "-m", "kdcli", "soft-labels", "--teacher", teacher, "--data", data, "--out", soft,
                "--quiet")
    return data, teacher, soft


def students(specs, data, teacher, workdir):
    """Each student spec: its parameter count and the STUDENT argument `processes.py fit` takes for it."""
    import kdcli

    dataset, loaded = kdcli.load_data(str(data)), kdcli.load_model(teacher)
    out = {}
    for spec in specs:
        model = kdcli.build_from_spec(spec, dataset, seed=0, teacher=loaded if spec.startswith("shrink") else None)
        fit_spec = spec
        if spec.startswith("shrink"):
            fit_spec = workdir / f"student-{spec.replace(':', '-')}.keras"
            model.save(fit_spec)
        out[spec] = {"params": model.count_params(), "fit_spec": str(fit_spec)}
    return out


def configurations(spec, fit_spec, trees, data, teacher, soft, workdir, steps_per_call_one, bf16=False):
    """name -> a function of the epoch count that runs the whole process once: (seconds, load)."""

    def distill(tree, *extra):
        def run(epochs):
            shrink = ("--teacher", teacher) if spec.startswith("shrink") else ()
            return process(tree, workdir, "-m", "kdcli", "distill", "--soft-labels", soft, *shrink, "--data", data,
                           "--student", spec, "--epochs", epochs, "--batch-size", 64, *extra,
                           "--out", workdir / "student-out.keras", "--quiet")
        return run

    def fit(spe):
        return lambda epochs: process(trees["after"], workdir, HERE / "processes.py", "fit", data, fit_spec, epochs,
                                      spe)

    runs = {f"fit_spe{spe}": fit(spe) for spe in FITS}
    runs["fit_spe128_jit"] = lambda epochs: process(trees["after"], workdir, HERE / "processes.py", "fit", data,
                                                    fit_spec, epochs, 128, "true")
    if "before" in trees:
        runs["distill_before"] = distill(trees["before"])
    runs["distill_after"] = distill(trees["after"])
    runs["distill_after_xla"] = distill(trees["after"], "--xla")
    if bf16:  # both in bfloat16, the logits float32 (kdcli's --mixed-precision bf16)
        runs["fit_spe128_bf16"] = lambda epochs: process(trees["after"], workdir, HERE / "processes.py", "fit", data,
                                                         fit_spec, epochs, 128, "auto", "bf16")
        runs["distill_after_bf16"] = distill(trees["after"], "--mixed-precision", "bf16")
    if steps_per_call_one:
        runs["distill_after_spc1"] = distill(trees["after"], "--steps-per-call", 1)
    if spec == "mlp":  # keras.distillation's online Distiller, with the same student and teacher
        runs["distiller"] = lambda epochs: process(trees["after"], workdir, HERE / "processes.py", "distiller", data,
                                                   teacher, epochs)
    return runs


def soft_labels_against_predict(trees, data, teacher, workdir, repeats=3):
    """`kdcli soft-labels` before and after against the teacher's own `predict` (batch 256), whole
    processes, interleaved, `repeats` times: every run's seconds and load."""
    runs = {"predict": lambda: process(trees["after"], workdir, HERE / "processes.py", "predict", data, teacher)}
    for name in trees:
        runs[f"soft_labels_{name}"] = lambda tree=trees[name]: process(
            tree, workdir, "-m", "kdcli", "soft-labels", "--teacher", teacher, "--data", data,
            "--out", workdir / "soft-out.h5", "--quiet")
    raw = {name: [] for name in runs}
    for repeat in range(repeats):
        for name, run in runs.items():
            seconds, load, cpu = run()
            raw[name].append({"s": seconds, "load": load, "cpu_s": cpu})
            log(f"  {name} (repeat {repeat + 1}): {seconds:.1f} s, load {load:.2f}")
    return {name: {"best_s": min(r["s"] for r in runs_), "runs": runs_} for name, runs_ in raw.items()}


def measure(runs, low, high, repeats):
    """Interleaved: every configuration at `low` then at `high`, `repeats` times; per configuration the raw
    runs, the best at each count and the slope between them."""
    raw = {name: {"low": [], "high": []} for name in runs}
    for repeat in range(repeats):
        for point, epochs in (("low", low), ("high", high)):
            for name, run in runs.items():
                seconds, load, cpu = run(epochs)
                raw[name][point].append({"s": seconds, "load": load, "cpu_s": cpu})
                log(f"  {name} {epochs} epochs (repeat {repeat + 1}): {seconds:.1f} s ({cpu:.1f} CPU s), "
                    f"load {load:.2f}")
    out = {}
    for name, r in raw.items():
        best_low, best_high = (min(x["s"] for x in r[p]) for p in ("low", "high"))
        cpu_low, cpu_high = (min(x["cpu_s"] for x in r[p]) for p in ("low", "high"))
        out[name] = {"per_epoch_s": (best_high - best_low) / (high - low), "low_s": best_low, "high_s": best_high,
                     "per_epoch_cpu_s": (cpu_high - cpu_low) / (high - low), "runs": r}
    return out


def gpu_names():
    """The GPUs TensorFlow sees, by name (empty on a machine without one)."""
    import tensorflow as tf

    return [tf.config.experimental.get_device_details(d).get("device_name", d.name)
            for d in tf.config.list_physical_devices("GPU")]


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def markdown(kept):
    rows = kept["rows"]
    full = [row for row in rows if not row.get("focused")]
    out = ["## Several steps per call: offline distill against Keras' fastest fit, the Distiller and predict"]
    if full:
        out += _main_table(kept, full)
    out += _bf16(full)
    out += _focused([row for row in rows if row.get("focused")])
    out += _before_after(kept.get("before_after"), kept.get("soft_labels"))
    if kept.get("notes"):
        out += ["", kept["notes"]]
    return "\n".join(out) + "\n"


def _main_table(kept, full):
    """Every configuration of each student: the first table, its bests, and the Distiller."""
    m = kept["machine"]
    lo, hi = kept["epochs"]
    loads = [x["load"] for row in full for c in row["configs"].values() for p in ("low", "high") for x in c["runs"][p]]
    out = [
        "",
        f"Whole processes, timed from start to exit (`benchmarks/steps.py`, {m['date']}): `kdcli distill "
        f"--soft-labels soft.h5 --data mnist.npz --student S --epochs N --batch-size 64 --out ... --quiet` (with "
        f"`--teacher T.keras` beside it for `shrink:0.25`) at {kept['after']} (several steps a compiled call, the "
        f"count chosen automatically, one input pipeline for the run over the arrays themselves), and the same "
        f"with `--xla`, {'from a git worktree' if kept.get('before') else 'from the checkout itself'}; plain Keras `model.fit` of the same student on the hard labels, batch "
        f"64, Adam 1e-3, the data in memory, compiled with `steps_per_execution` 1, 32 and 128, and 128 with "
        f"`jit_compile=True` (`benchmarks/processes.py fit`; for `shrink:0.25` the same architecture saved as a "
        f".keras file); for `mlp`, keras.distillation's online `Distiller` with the same teacher and student "
        f"(`processes.py distiller`). Data: the MNIST benchmark split (8,000 training images); teacher: `kdcli "
        f"train-teacher --epochs 5`. Seconds per epoch are the slope (t_{hi} − t_{lo}) / {hi - lo} between runs "
        f"of {lo} and {hi} epochs, each the best of {kept['repeats']}; a student's runs were interleaved (every "
        f"configuration at {lo} epochs, then at {hi}, {kept['repeats']} times) so that drifts in load hit them "
        f"alike. Machine: {m['cpu']}, {m['cores']} cores, {_gpus(m)}, Python {m['python']}, TensorFlow {m['tensorflow']}; "
        f"nothing else ran, and the 1-minute load average before a run ranged {min(loads):.1f}–{max(loads):.1f} "
        f"(the runs' own).",
        "",
        "| student | params | fit spe=1 | fit spe=32 | fit spe=128 | fit spe=128, XLA | distill | distill --xla | "
        "distill ÷ fastest fit | --xla ÷ distill |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in full:
        per = {name: v["per_epoch_s"] for name, v in row["configs"].items()}
        fastest = min(v for k, v in per.items() if k.startswith("fit"))
        out.append(f"| {row['student']} | {row['params']:,} | " + " | ".join(
            f"{per[n]:.3f}" for n in MAIN)
            + f" | {per['distill_after'] / fastest:.2f}x | {per['distill_after_xla'] / per['distill_after']:.2f}x |")
    shown = [n for n in NAMES if n != "distill_before" and any(n in row["configs"] for row in full)]
    out += ["", f"Seconds per epoch. The bests behind each slope ({lo} / {hi} epochs, whole process, s):", "",
            "| student | " + " | ".join(NAMES[n] for n in shown) + " |", "| --- |" + " ---: |" * len(shown)]
    for row in full:
        c = row["configs"]
        out.append(f"| {row['student']} | " + " | ".join(
            f"{c[n]['low_s']:.1f} / {c[n]['high_s']:.1f}" if n in c else "–" for n in shown) + " |")
    for row in full:
        c = row["configs"]
        if "distiller" in c:
            ratio = c["distiller"]["per_epoch_s"] / c["distill_after"]["per_epoch_s"]
            out += ["", f"keras.distillation's `Distiller` ({row['student']}, online, the teacher run on every "
                    f"batch) costs {c['distiller']['per_epoch_s']:.3f} s an epoch: {ratio:.1f}x offline `distill` "
                    f"({c['distill_after']['per_epoch_s']:.3f} s), whose teacher ran once, in `soft-labels`."]
    return out


def _gpus(machine):
    """The GPUs a machine entry names: 'no GPU' when it recorded none, and says so when it did not record them."""
    if "gpus" not in machine:
        return "GPUs not recorded"
    return ", ".join(machine["gpus"]) or "no GPU"


def _bf16(rows):
    """fit and distill computing in bfloat16 (`--bf16`), beside float32."""
    rows = [row for row in rows if "distill_after_bf16" in row["configs"]]
    if not rows:
        return []
    out = ["", "Mixed precision: the same runs with the students computing in bfloat16, their logits float32 "
           "(`--mixed-precision bf16`; for fit, the student kdcli builds with it), seconds per epoch:", "",
           "| student | fit spe=128 | fit spe=128, bf16 | distill | distill, bf16 | distill bf16 ÷ fit bf16 | "
           "bf16 ÷ float32 (distill) |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        per = {name: v["per_epoch_s"] for name, v in row["configs"].items()}
        out.append(f"| {row['student']} | {per['fit_spe128']:.3f} | {per['fit_spe128_bf16']:.3f} | "
                   f"{per['distill_after']:.3f} | {per['distill_after_bf16']:.3f} | "
                   f"{per['distill_after_bf16'] / per['fit_spe128_bf16']:.2f}x | "
                   f"{per['distill_after_bf16'] / per['distill_after']:.2f}x |")
    return out


def _focused(rows):
    """The rows of a sitting of a few configurations (`--configs`): distill against fit's fastest, by the wall
    clock and by the CPU seconds the processes used."""
    if not rows:
        return []
    out = ["", "Distill against fit alone, in later sittings of their own (the same processes and interleaving, "
           "more repeats), by the wall clock and by the CPU seconds each process used (user and system, all its "
           "threads). Beside the ratio of the bests, the ratio within each repeat (its own slope of distill over "
           "the faster fit of that repeat), mean ± standard deviation over the repeats: the noise of one ratio.",
           "", "| student, kdcli commit, date, machine | epochs | best of | fit spe=32 | fit spe=128 | distill | "
           "distill ÷ fastest fit | per repeat | CPU s per epoch: fastest fit | distill | distill ÷ fastest fit | "
           "per repeat |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        c = row["configs"]
        fits = [n for n in c if n.startswith("fit") and not n.endswith("bf16")]
        wall = min(c[n]["per_epoch_s"] for n in fits)
        cpu = min(c[n]["per_epoch_cpu_s"] for n in fits)
        d = c["distill_after"]
        lo, hi = row["epochs"]
        m = row.get("machine", {})
        where = f"{m.get('cpu', '?')} ({m.get('cores', '?')} cores), {_gpus(m)}"
        out.append(f"| {row['student']}, {row['after']}, {row['date']}, {where} | {lo} / {hi} | {row['repeats']} | " + " | ".join(
            f"{c[n]['per_epoch_s']:.3f}" if n in c else "–" for n in ("fit_spe32", "fit_spe128"))
            + f" | {d['per_epoch_s']:.3f} | {d['per_epoch_s'] / wall:.2f}x | {_per_repeat(c, fits, 's', lo, hi)} | "
            f"{cpu:.3f} | {d['per_epoch_cpu_s']:.3f} | {d['per_epoch_cpu_s'] / cpu:.2f}x | "
            f"{_per_repeat(c, fits, 'cpu_s', lo, hi)} |")
    loads = [x["load"] for row in rows for c in row["configs"].values() for p in ("low", "high") for x in c["runs"][p]]
    out += ["", f"The 1-minute load average before a run ranged {min(loads):.1f}–{max(loads):.1f} (the runs' own)."]
    return out


def _per_repeat(configs, fits, key, lo, hi):
    """distill's slope over the faster fit's within each repeat: 'mean ± sd' over the repeats."""
    def slopes(name):
        runs = configs[name]["runs"]
        return [(high[key] - low[key]) / (hi - lo) for low, high in zip(runs["low"], runs["high"])]

    fastest = [min(each) for each in zip(*(slopes(n) for n in fits))]
    ratios = [d / f for d, f in zip(slopes("distill_after"), fastest)]
    if len(ratios) < 2:
        return "–"
    return f"{statistics.mean(ratios):.2f} ± {statistics.stdev(ratios):.2f}"


def _spread(runs):
    seconds = [r["s"] for r in runs]
    return f"{min(seconds):.1f}–{max(seconds):.1f}"


def _before_after(ba, soft):
    """The before-and-after tables of a `--before-after` sitting, and soft-labels against predict."""
    out = []
    if ba:
        lo, hi = ba["epochs"]
        out += ["", f"Before and after, side by side in one later sitting ({ba['machine']['date']}, the same "
                f"interleaving, {lo} and {hi} epochs, best of {ba['repeats']}): offline `distill` at {ba['before']} "
                f"(one step a compiled call, the input pipeline rebuilt every epoch, TensorFlow's copies of "
                f"in-memory arrays, one batch a call in inference) and at {ba['after']}, seconds per epoch:", "",
                "| student | before | after | after ÷ before | bests before (s) | bests after (s) |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for row in ba["rows"]:
            b, a = row["configs"]["distill_before"], row["configs"]["distill_after"]
            out.append(f"| {row['student']} | {b['per_epoch_s']:.3f} | {a['per_epoch_s']:.3f} | "
                       f"{a['per_epoch_s'] / b['per_epoch_s']:.2f}x | {b['low_s']:.1f} / {b['high_s']:.1f} | "
                       f"{a['low_s']:.1f} / {a['high_s']:.1f} |")
        soft = ba.get("soft_labels", soft)
    if soft and "soft_labels_before" not in soft:  # a sitting with no before (--here)
        best = {name: v["best_s"] for name, v in soft.items()}
        out += ["", f"`kdcli soft-labels` against the teacher's own `predict`, the best of {len(soft['predict']['runs'])}: "
                f"{best['soft_labels_after']:.2f} s against {best['predict']:.2f} s, "
                f"{best['soft_labels_after'] / best['predict']:.2f}x."]
    elif soft:
        best = {name: v["best_s"] for name, v in soft.items()}
        out += ["", "`kdcli soft-labels --teacher T.keras --data mnist.npz` (8,000 images, batches of 256) before "
                "and after, against the teacher's own `predict(x, batch_size=256)` in a process that loads the "
                f"same data (`processes.py predict`), whole processes, interleaved, the best of "
                f"{len(soft['predict']['runs'])} (s):", "",
                "| soft-labels before | soft-labels after | predict | after ÷ predict | after ÷ before |",
                "| ---: | ---: | ---: | ---: | ---: |",
                f"| {best['soft_labels_before']:.2f} | {best['soft_labels_after']:.2f} | {best['predict']:.2f} | "
                f"{best['soft_labels_after'] / best['predict']:.2f}x | "
                f"{best['soft_labels_after'] / best['soft_labels_before']:.2f}x |",
                "| " + " | ".join(_spread(soft[n]["runs"]) for n in ("soft_labels_before", "soft_labels_after",
                                                                    "predict")) + " | (every run) | |"]
    return out


MAIN = ("fit_spe1", "fit_spe32", "fit_spe128", "fit_spe128_jit", "distill_after", "distill_after_xla")
NAMES = {"fit_spe1": "fit spe=1", "fit_spe32": "fit spe=32", "fit_spe128": "fit spe=128",
         "fit_spe128_jit": "fit spe=128, XLA", "distill_before": "distill before", "distill_after": "distill",
         "distill_after_xla": "distill --xla", "distill_after_spc1": "after, --steps-per-call 1",
         "distiller": "Distiller", "fit_spe128_bf16": "fit spe=128, bf16", "distill_after_bf16": "distill, bf16"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="/work/bench28", help="outside the repository (the current "
                        "directory comes first on sys.path)")
    parser.add_argument("--students", nargs="+", default=["mlp", "shrink:0.25", "cnn"])
    parser.add_argument("--low", type=int, default=4)
    parser.add_argument("--high", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--spc1", action="store_true", help="also HEAD with --steps-per-call 1")
    parser.add_argument("--configs", nargs="+", choices=sorted(NAMES), help="only these configurations (kept as "
                        "rows of their own, under --tag)")
    parser.add_argument("--before-after", action="store_true", help="only distill and soft-labels before and "
                        "after, interleaved, kept beside the rows already in --json")
    parser.add_argument("--no-soft-labels", action="store_true", help="skip soft-labels against predict")
    parser.add_argument("--before", default=BEFORE)
    parser.add_argument("--here", action="store_true", help="this checkout alone, as it is (no git history needed, "
                        "no before): for a machine it was copied to, such as one with a GPU")
    parser.add_argument("--bf16", action="store_true", help="also fit and distill computing in bfloat16")
    parser.add_argument("--data", help="the MNIST split as an .npz (default: made in --workdir from ../shared)")
    parser.add_argument("--trees", default="/tmp", help="where the two worktrees go (kd-before, kd-after)")
    parser.add_argument("--keep-worktrees", action="store_true")
    parser.add_argument("--append", action="store_true", help="keep the students already in --json")
    parser.add_argument("--tag", help="name this run's rows `SPEC (TAG)`, to keep a second pass beside a first")
    parser.add_argument("--json", default=str(HERE / "steps.json"))
    parser.add_argument("--markdown", default=str(HERE / "steps.md"))
    parser.add_argument("--render", metavar="JSON", help="measure nothing: write --markdown from kept numbers")
    args = parser.parse_args()
    if args.configs:
        if not args.tag:
            parser.error("--configs needs --tag: its rows are kept beside the main table's, under their own name")
        if "distill_after" not in args.configs or not any(n.startswith("fit") and not n.endswith("bf16")
                                                           for n in args.configs):
            parser.error("--configs needs distill_after and a float32 fit to compare it with")
        if any(n not in ("distill_after", "fit_spe1", "fit_spe32", "fit_spe128", "fit_spe128_jit", "distill_after_xla",
                         "distill_after_spc1") for n in args.configs):
            parser.error("--configs takes the float32 distill and fit configurations")
    if args.before_after and (args.configs or args.here):
        parser.error("--before-after compares two commits: not with --configs or --here")
    if args.render:
        Path(args.markdown).write_text(markdown(json.loads(Path(args.render).read_text())))
        return
    workdir = Path(args.workdir).resolve()
    if workdir.is_relative_to(ROOT):
        raise SystemExit(f"--workdir must be outside {ROOT}: the current directory would shadow the worktrees")
    workdir.mkdir(parents=True, exist_ok=True)
    if args.here:
        trees, commits = {"after": ROOT}, {"after": "this checkout"}
    else:
        trees = {"before": Path(args.trees) / "kd-before", "after": Path(args.trees) / "kd-after"}
        commits = {"before": worktree(trees["before"], args.before), "after": worktree(trees["after"], "HEAD")}
    try:
        for name, tree in trees.items():
            where = imported_from(tree, workdir)
            if not where.startswith(str(tree)):
                raise SystemExit(f"{name}: kdcli imports from {where}, not {tree}")
        import tensorflow as tf

        gpus = gpu_names()
        tf.config.set_visible_devices([], "GPU")  # this process only: the timed ones get the GPU to themselves
        log("teacher and soft labels")
        data, teacher, soft = prepare(workdir, trees["after"], args.data)
        info = students(args.students, data, teacher, workdir)
        machine = {"date": datetime.date.today().isoformat(), "cpu": cpu_name(), "cores": os.cpu_count(), "gpus": gpus,
                   "python": platform.python_version(), "tensorflow": tf.__version__}
        kept = {"machine": machine,
                "before": commits.get("before"), "after": commits["after"], "epochs": [args.low, args.high],
                "repeats": args.repeats, "rows": []}
        if (args.append or args.before_after or args.configs) and Path(args.json).exists():
            # another run's, kept beside this one's (a sitting of a few configurations keeps its own facts)
            kept = {**json.loads(Path(args.json).read_text()), **({} if args.before_after or args.configs else
                                                                   {k: v for k, v in kept.items() if k != "rows"})}
        into = kept
        if args.before_after:
            into = kept["before_after"] = {"machine": {"date": datetime.date.today().isoformat()}, **commits,
                                           "epochs": [args.low, args.high], "repeats": args.repeats, "rows": []}
        for spec in args.students:
            log(f"student {spec}")
            runs = configurations(spec, info[spec]["fit_spec"], trees, data, teacher, soft, workdir, args.spc1, args.bf16)
            if args.before_after:
                runs = {name: runs[name] for name in ("distill_before", "distill_after")}
            elif args.configs:
                runs = {name: runs[name] for name in args.configs}
            label = f"{spec} ({args.tag})" if args.tag else spec
            into["rows"] = [r for r in into["rows"] if r["student"] != label]
            row = {"student": label, "spec": spec, "before": commits.get("before"), "after": commits["after"],
                   "params": info[spec]["params"], "epochs": [args.low, args.high], "repeats": args.repeats,
                   "date": datetime.date.today().isoformat()}
            if args.configs:  # a sitting of its own: where it ran goes with it
                row.update(focused=True, machine={k: v for k, v in machine.items() if k != "date"})
            into["rows"].append({**row, "configs": measure(runs, args.low, args.high, args.repeats)})
            Path(args.json).write_text(json.dumps(kept, indent=2))  # kept after each student
            Path(args.markdown).write_text(markdown(kept))
        if not args.no_soft_labels and not args.configs:  # a sitting of a few configurations leaves them be
            log("soft-labels against predict")
            into["soft_labels"] = soft_labels_against_predict(trees, data, teacher, workdir)
            Path(args.json).write_text(json.dumps(kept, indent=2))
            Path(args.markdown).write_text(markdown(kept))
    finally:
        if not args.keep_worktrees and not args.here:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                               capture_output=True)
    log(f"wrote {args.json} and {args.markdown}")


if __name__ == "__main__":
    main()
