"""Reports of an evaluation: a Rich table for people, JSON for machines."""

import json

from rich.table import Table


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def table(report):
    """A Rich table of an evaluation report (see `kdcli.evaluate_models`)."""
    data = report["data"]
    t = Table(
        title=f"{data['spec']}: {data['n_test']} test samples, {data['num_classes']} classes",
        caption=f"latency: {report['latency']['method']}; TensorFlow {report['latency']['tensorflow']}, "
        f"{report['latency']['cpu_count']} CPUs ({report['latency']['cpu']})",
    )
    with_baseline = any("baseline_accuracy" in m for m in report["models"])
    t.add_column("model", overflow="fold")
    for name in ("accuracy", "params", "size", "latency ms", "p95 ms", "samples/s", "agreement",
                 "smaller", "faster", "Δ accuracy") + (("from scratch (gain)",) if with_baseline else ()):
        t.add_column(name, justify="right", no_wrap=True)
    for m in report["models"]:
        ratios = (
            [f"{m['compression']:.1f}x", f"{m['speedup']:.1f}x", f"{m['accuracy_change_points']:+.1f} pts"]
            if "compression" in m else ["—", "—", "—"]
        )
        t.add_row(
            m["path"], f"{100 * m['accuracy']:.1f}%", f"{m['params']:,}", _size(m["size_bytes"]),
            f"{m['latency_ms']:.3f}", f"{m['latency_p95_ms']:.3f}", f"{m['throughput']:,.0f}",
            f"{100 * m['agreement']:.1f}%", *ratios,
            *([_baseline(m)] if with_baseline else []),
        )
    return t


def _baseline(m):
    if "baseline_accuracy" not in m:
        return "—"
    return f"{100 * m['baseline_accuracy']:.1f}% ({m['distillation_gain_points']:+.1f} pts)"


def to_json(report):
    """The report as indented JSON text."""
    return json.dumps(report, indent=2)
