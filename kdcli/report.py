"""Reports of an evaluation: a Rich table, Markdown and JSON, and an optional plot.

The table and the Markdown show the same columns and rows (`rows`); the JSON
is the report itself (schema `kdcli.evaluate/1`, see `kdcli.evaluate_models`).
"""

import json


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _ratio(value):
    return "—" if value is None else f"{value:.1f}x"


def title(report):
    data = report["data"]
    return f"{data['spec']}: {data['n_test']} test samples, {data['num_classes']} classes"


def footer(report):
    """How latency was measured, so numbers from two machines are not confused."""
    lat = report["latency"]
    return (f"latency: {lat['method']}; {lat['threads']} threads, TensorFlow {lat['tensorflow']}, "
            f"{lat['cpu_count']} CPUs ({lat['cpu']})")


def rows(report):
    """The header and the rows of text shared by the table and the Markdown."""
    models = report["models"]
    top5 = any("top5_accuracy" in m for m in models)
    baseline = any("baseline_accuracy" in m for m in models)
    header = ["model", "accuracy", *(["top-5"] if top5 else []), "params", "size", "latency ms", "p95 ms",
              "samples/s", "agreement", "smaller", "faster", "Δ accuracy",
              *(["from scratch (gain)"] if baseline else [])]
    body = []
    for i, m in enumerate(models):
        ratios = (
            [_ratio(m["compression"]), _ratio(m["speedup"]),
             f"{m['accuracy_change_points']:+.1f} pts"] if i else ["—", "—", "—"]
        )
        body.append([
            m["path"], f"{100 * m['accuracy']:.1f}%",
            *([f"{100 * m['top5_accuracy']:.1f}%" if "top5_accuracy" in m else "—"] if top5 else []),
            f"{m['params']:,}" if m["params"] is not None else "—", _size(m["size_bytes"]),
            f"{m['latency_ms']:.3f}", f"{m['latency_p95_ms']:.3f}", f"{m['throughput']:,.0f}",
            f"{100 * m['agreement']:.1f}%", *ratios,
            *([_baseline(m)] if baseline else []),
        ])
    return header, body


def _baseline(m):
    if "baseline_accuracy" not in m:
        return "—"
    return f"{100 * m['baseline_accuracy']:.1f}% ({m['distillation_gain_points']:+.1f} pts)"


def table(report):
    """A Rich table of an evaluation report."""
    from rich.table import Table

    header, body = rows(report)
    t = Table(title=title(report), caption=footer(report))
    t.add_column(header[0], overflow="fold")
    for name in header[1:]:
        t.add_column(name, justify="right", no_wrap=True)
    for row in body:
        t.add_row(*row)
    return t


def markdown(report):
    """The report as a Markdown table (for CI job summaries), with its footer and gates."""
    header, body = rows(report)
    lines = [f"### {title(report)}", "", "| " + " | ".join(header) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    lines += ["", f"_{footer(report)}_"]
    for gate in report.get("gates", []):
        rule = (f"accuracy ≥ {gate['threshold']}" if gate["gate"] == "min_accuracy"
                else f"accuracy drop ≤ {gate['threshold']} points")
        lines.append(f"- `{gate['model']}`: {rule}: {'passed' if gate['passed'] else '**failed**'}")
    return "\n".join(lines) + "\n"


def to_json(report):
    """The report as indented JSON text."""
    return json.dumps(report, indent=2)


def plot(report, path):
    """Draw accuracy against batch-1 latency, marker area by size on disk, to a PNG.

    Needs matplotlib (`pip install 'kdcli[plot]'`).
    """
    from kdcli.artifacts import atomic_path
    from kdcli.errors import KdcliError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise KdcliError("--plot needs matplotlib: pip install 'kdcli[plot]'") from None
    models = report["models"]
    largest = max(m["size_bytes"] for m in models)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in models:
        ax.scatter(m["latency_ms"], 100 * m["accuracy"], s=60 + 900 * m["size_bytes"] / largest, alpha=0.6)
        ax.annotate(m["path"], (m["latency_ms"], 100 * m["accuracy"]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    ax.set_xlabel("batch-1 latency, median (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title(report) + " (marker area: size on disk)", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
