"""Reports of an evaluation: a Rich table, Markdown and JSON, and an optional plot.

The table and the Markdown show the same columns and rows (`rows`); the JSON
is the report itself (schema `kdcli.evaluate/1`, see `kdcli.evaluate_models`).
"""

import json
from pathlib import PurePath

# The columns of the split layout, for terminals too narrow for one table:
# how good each model is, then how big and fast. Columns not named here go
# with size and speed.
ACCURACY_COLUMNS = ("method", "epochs", "accuracy", "top-5", "agreement", "Δ accuracy", "from scratch (gain)")

# Wider than any terminal: measuring a table at this width gives its natural
# width, the one at which Rich shrinks no column.
_UNLIMITED = 10_000


def format_size(n_bytes):
    """A size in bytes for people to read, in binary units.

    Args:
        n_bytes: a number of bytes.

    Returns:
        The size as `B` (whole bytes), `KiB`, `MiB` or `GiB` (one decimal),
        such as `512 B` or `1.5 MiB`.
    """
    n = n_bytes
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _ratio(value):
    return "—" if value is None else f"{value:.1f}x"


def title(report):
    """The report's title line: the data, its number of test samples and classes.

    Args:
        report: an `evaluate_models` report.

    Returns:
        The title as text.
    """
    data = report["data"]
    return f"{data['spec']}: {data['n_test']} test samples, {data['num_classes']} classes"


def footer(report):
    """How latency was measured, so numbers from two machines are not confused.

    Args:
        report: an `evaluate_models` report.

    Returns:
        The footer as one line of text.
    """
    lat = report["latency"]
    return (f"latency: {lat['method']}; {lat['threads']} threads, TensorFlow {lat['tensorflow']}, "
            f"{lat['cpu_count']} CPUs ({lat['cpu']})")


def rows(report):
    """The header and the rows of text shared by the table and the Markdown.

    Args:
        report: an `evaluate_models` report.

    Returns:
        `(header, body)`: the column names, and one list of cell texts per
        model, its full path first.
    """
    models = report["models"]
    top5 = any("top5_accuracy" in m for m in models)
    baseline = any("baseline_accuracy" in m for m in models)
    methods = any(m.get("method") for m in models)
    epochs = any(m.get("epochs") for m in models)
    header = ["model", *(["method"] if methods else []), *(["epochs"] if epochs else []), "accuracy", *(["top-5"] if top5 else []), "params",
              "size", "latency ms", "p95 ms",
              "samples/s", "agreement", "fewer params", "smaller file", "faster", "Δ accuracy",
              *(["from scratch (gain)"] if baseline else [])]
    body = []
    for i, m in enumerate(models):
        ratios = (
            [_ratio(m["compression"]), _ratio(m["size_ratio"]), _ratio(m["speedup"]),
             _points(m["accuracy"], models[0]["accuracy"])] if i else ["—", "—", "—", "—"]
        )
        body.append([
            m["path"], *([method_label(m.get("method"))] if methods else []),
            *([epochs_label(m.get("epochs"), m.get("best_epoch"))] if epochs else []), f"{100 * m['accuracy']:.1f}%",
            *([f"{100 * m['top5_accuracy']:.1f}%" if "top5_accuracy" in m else "—"] if top5 else []),
            f"{m['params']:,}" if m["params"] is not None else "—", format_size(m["size_bytes"]),
            f"{m['latency_ms']:.3f}", f"{m['latency_p95_ms']:.3f}", f"{m['throughput']:,.0f}",
            f"{100 * m['agreement']:.1f}%", *ratios,
            *([_baseline(m)] if baseline else []),
        ])
    return header, body


def gain_phrase(points, decimals=1, spread=None):
    """What distillation did, in words: `distillation gained 0.4 points`, or `lost 0.4 points`
    for a negative gain (as rounded to `decimals`), with `± spread` when given."""
    shown = round(points, decimals) + 0.0  # + 0.0: no "-0.0"
    verb = "lost" if shown < 0 else "gained"
    spread_text = "" if spread is None else f" ± {spread:.{decimals}f}"
    return f"distillation {verb} {abs(shown):.{decimals}f}{spread_text} points"


# What to try when distillation lost to the same student trained from scratch.
NEXT_STEP = "try --tune 8 (methods and settings, scored on the validation split) or a longer --patience"


def loss_advice(points, noise=None):
    """The words after a gain that may be a loss: empty for a gain (or a loss within `noise`, the seeds'
    spread); for a loss measured on one seed (`noise` None), how to tell it from noise and what to try;
    for a loss beyond the seeds' noise, what to try."""
    if round(points, 1) >= 0 or (noise is not None and abs(points) <= noise):
        return ""
    if noise is None:
        return f" (one seed: --seeds 3 tells a loss from noise); {NEXT_STEP}"
    return f", beyond the seeds' noise; {NEXT_STEP}"


def method_label(config):
    """A method's name for the table: `kd`, `dkd`, `dist`, with `+ls` for logit standardisation; `—` for none."""
    if not config:
        return "—"
    return config["name"] + ("+ls" if config.get("standardize") else "")


def epochs_label(epochs, best_epoch=None):
    """The epochs a model trained: `40`, or `57 (best 37)` for a run that stopped on its validation split."""
    if not epochs:
        return "—"
    return f"{epochs} (best {best_epoch})" if best_epoch else str(epochs)


def _baseline(m):
    if "baseline_accuracy" not in m:
        return "—"
    return f"{100 * m['baseline_accuracy']:.1f}% ({_points(m['accuracy'], m['baseline_accuracy'])})"


def _points(accuracy, reference):
    """The difference of two accuracies in points, as the table shows them: the difference of
    the rounded percentages, so that it agrees with the values beside it."""
    return f"{round(100 * accuracy, 1) - round(100 * reference, 1):+.1f} pts"


def labels(report):
    """Short names for the models: each file's name, or as few of the folders
    above it as tell it apart from the others' (`a/student.keras`,
    `b/student.keras`).

    Args:
        report: an `evaluate_models` report.

    Returns:
        One label per model, in the report's order.
    """
    parts = [PurePath(m["path"]).parts for m in report["models"]]
    depth = [1] * len(parts)

    def label(i):
        return PurePath(*parts[i][-depth[i]:]).as_posix() if parts[i] else ""

    while True:
        names = [label(i) for i in range(len(parts))]
        # Lengthen only the labels that clash and still can; two copies of
        # one path keep clashing, but then they name the same file anyway.
        grow = [i for i, name in enumerate(names) if names.count(name) > 1 and depth[i] < len(parts[i])]
        if not grow:
            return names
        for i in grow:
            depth[i] += 1


def _table(header, body, columns, model_names, **kwargs):
    """A Rich table of the model column and the named columns.

    The value columns never wrap, so a cell is shown whole or (when Rich must
    shrink it) cut; `render` only prints tables that fit, so none is cut. The
    model column may fold: a model name longer than the terminal is the one
    thing that cannot be helped.
    """
    from rich.table import Table

    t = Table(**kwargs)
    t.add_column(header[0], overflow="fold")
    index = [header.index(name) for name in columns]
    for name in columns:
        t.add_column(name, justify="right", no_wrap=True)
    for name, row in zip(model_names, body):
        t.add_row(name, *(row[i] for i in index))
    return t


def table(report):
    """A Rich table of an evaluation report, every column, full model paths.

    It fits wide terminals only; `render` prints a report at any width.

    Args:
        report: an `evaluate_models` report.

    Returns:
        A `rich.table.Table` with the title and the footer as caption.
    """
    header, body = rows(report)
    return _table(header, body, header[1:], [row[0] for row in body], title=title(report), caption=footer(report))


def _fits(console, renderable):
    # Rich's measure clamps to the width it is given: measure without a limit
    # to get the width at which nothing is shrunk.
    width = console.measure(renderable, options=console.options.update_width(_UNLIMITED)).maximum
    return width <= console.width


def render(report, console):
    """Print a report on a console of any width, cutting no value.

    One table when it fits the console's width (as `table`, with short model
    labels); otherwise one table for accuracy and one for size and speed, each
    split further while too wide, each repeating the model column. Then a
    legend of the labels that are not the full paths, then the footer; both
    wrap to the width.

    Args:
        report: an `evaluate_models` report.
        console: the `rich.console.Console` to print on.
    """
    from rich.table import Table
    from rich.text import Text

    header, body = rows(report)
    names = labels(report)
    single = _table(header, body, header[1:], names, title=title(report))
    if _fits(console, single):
        console.print(single)
    else:
        console.print(Text(title(report), style="italic"))
        accuracy = [name for name in header[1:] if name in ACCURACY_COLUMNS]
        other = [name for name in header[1:] if name not in ACCURACY_COLUMNS]
        for group_title, columns in (("accuracy", accuracy), ("size and speed", other)):
            parts = _split(console, header, body, names, columns)
            for i, part in enumerate(parts):
                numbered = f"{group_title} ({i + 1} of {len(parts)})" if len(parts) > 1 else group_title
                console.print(_table(header, body, part, names, title=numbered))
    legend = [(name, m["path"]) for name, m in zip(names, report["models"]) if name != m["path"]]
    if legend:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")  # a long path folds rather than being cut
        for name, path in legend:
            grid.add_row(name, path)
        console.print(grid)
    for m in report["models"]:
        if m.get("distillation_gain_points") is not None and loss_advice(m["distillation_gain_points"]):
            console.print(Text(f"{m['path']}: {gain_phrase(m['distillation_gain_points'])} against the same "
                               f"student trained from scratch{loss_advice(m['distillation_gain_points'])}"))
    for m in report["models"]:
        if m.get("compress"):
            c = m["compress"]
            console.print(Text(f"{m['path']}: compressed, the smallest by {c['objective']} within "
                               f"{c['max_drop_points']:g} points of its teacher ({c['format']}), trial {c['trial']} "
                               f"of {c['study']}"))
    console.print(Text(footer(report), style="dim"))


def _split(console, header, body, names, columns):
    """The columns in order, in as few consecutive runs as fit one table each."""
    parts = []
    for name in columns:
        if parts and _fits(console, _table(header, body, [*parts[-1], name], names)):
            parts[-1].append(name)
        else:
            parts.append([name])  # a lone column too wide for the console still gets its table
    return parts


def markdown(report):
    """The report as a Markdown table (for CI job summaries), with its footer and gates.

    Args:
        report: an `evaluate_models` report, with `gates` when they were checked.

    Returns:
        The Markdown text, ending with a newline.
    """
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
    """The report as indented JSON text.

    Args:
        report: an `evaluate_models` report.

    Returns:
        The JSON text.
    """
    return json.dumps(report, indent=2)


def require_matplotlib():
    """Refuse `--plot` at once, before any work, when matplotlib is not installed.

    Raises:
        KdcliError: matplotlib is missing (exit code 4), with the command that installs it.
    """
    from kdcli.errors import KdcliError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise KdcliError("--plot needs matplotlib: pip install 'kdcli[plot]'") from None


def figure(report):
    """Accuracy against batch-1 latency, marker area by size on disk.

    Each point is labelled with its model's label (as in `render`), on the
    side facing the middle of the axes so that no label leaves the figure.

    Args:
        report: an `evaluate_models` report.

    Returns:
        A `matplotlib.figure.Figure` (drawn with Agg, outside pyplot).

    Raises:
        KdcliError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas, not pyplot: no global backend to set,
    # no figure to close.
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    models = report["models"]
    largest = max(m["size_bytes"] for m in models)
    points = [(m["latency_ms"], 100 * m["accuracy"]) for m in models]
    for m, point in zip(models, points):
        ax.scatter(*point, s=60 + 900 * m["size_bytes"] / largest, alpha=0.6)
    # Room for the large markers at the edges.
    ax.margins(0.15)
    ax.set_xlabel("batch-1 latency, median (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title(report) + " (marker area: size on disk)", fontsize=10)
    ax.grid(alpha=0.3)
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    for name, (x, y) in zip(labels(report), points):
        # A label grows away from the nearer edge: leftwards from a point in
        # the right half, downwards from one in the top half.
        right, top = x > (x0 + x1) / 2, y > (y0 + y1) / 2
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(-6 if right else 6, -6 if top else 6),
                    ha="right" if right else "left", va="top" if top else "bottom", fontsize=8)
    fig.tight_layout()
    return fig


def plot(report, path):
    """Draw `figure(report)` to a PNG file.

    Needs matplotlib (`pip install 'kdcli[plot]'`).

    Args:
        report: an `evaluate_models` report.
        path: the PNG file to write (atomically).

    Raises:
        KdcliError: matplotlib is not installed.
    """
    _save_png(figure(report), path)


def _save_png(fig, path):
    """Write a figure to a PNG file, atomically."""
    from kdcli.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def _percent(value):
    return "—" if value is None else f"{100 * value:.1f}"


def frontier_table(result):
    """`kdcli compress`'s frontier as a Rich table that fits 80 columns: the teacher, then one row per width
    with its best distilled student's parameters, size, latency (ms) and accuracies, and the test accuracy of
    scratch's at that width; `#` names the distilled trial, or the chosen one (either), marked `*`."""
    from rich.table import Table

    objective = {"params": "parameters", "size": "size", "latency": "latency"}[result["objective"]]
    table = Table(title=f"compress: smallest by {objective} within {result['target']['max_drop_points']:g} points "
                        f"({result['format']})", title_justify="left")
    for column in ("width", "params", "size", "ms", "val %", "test %", "scratch", "#"):
        table.add_column(column, justify="left" if column == "width" else "right", no_wrap=True)
    t = result["teacher"]
    table.add_row("teacher", f"{t['params']:,}" if t["params"] else "—", format_size(t["size_bytes"]),
                  f"{t['latency_ms']:.2f}", _percent(t["val_accuracy"]), _percent(t["test_accuracy"]), "", "")
    chosen = (result["chosen"] or {}).get("trial")
    for row in result["frontier"]:
        d, s = row["distilled"], row["scratch"]
        shown = d or s
        numbers = {t["trial"] for t in (d, s) if t}
        label = f"{chosen}*" if chosen in numbers else str(shown["trial"])
        table.add_row(f"x{row['width']:g}", f"{shown['params']:,}", format_size(shown["size_bytes"]),
                      f"{shown['latency_ms']:.2f}", _percent(d and d["val_accuracy"]), _percent(d and d["test_accuracy"]),
                      _percent(s and s["test_accuracy"]), label)
    return table


def frontier_lines(result):
    """The lines under the frontier: the target, and what was chosen or how far the best fell short."""
    target, chosen = result["target"], result["chosen"]
    lines = [f"target: validation accuracy ≥ {100 * target['min_val_accuracy']:.2f}% (the teacher's test accuracy "
             f"{100 * target['teacher_test_accuracy']:.2f}% less {target['max_drop_points']:g} points); "
             f"{len(result['trials'])} trials in {result['study']}"]
    if chosen is None:
        return lines + ["no trial finished"]
    what = f"trial {chosen['trial']} ({chosen['label']}): {chosen['params']:,} parameters, " \
           f"{format_size(chosen['size_bytes'])}, {chosen['latency_ms']:.3f} ms; validation " \
           f"{100 * chosen['val_accuracy']:.2f}%, test {100 * chosen['test_accuracy']:.2f}%"
    twin = result["scratch_twin"]
    if twin and twin["trial"] != chosen["trial"]:
        what += f" (from scratch at this width: test {100 * twin['test_accuracy']:.2f}%)"
    if result["met"]:
        return lines + [f"chosen: {what}"]
    return lines + [f"target not met: the best found is {what}, {result['drop_points']:.2f} points below the "
                    "teacher; allow a larger --max-drop, or search wider --widths or more --trials"]


def frontier_figure(result):
    """Test accuracy against the objective: the distilled and scratch students per width, the teacher's line
    and the target band (the teacher's accuracy less `--max-drop`), the chosen point circled."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = result["objective_key"]
    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for kind, style in (("distilled", "o-"), ("scratch", "s--")):
        points = sorted((row[kind][key], 100 * row[kind]["test_accuracy"]) for row in result["frontier"] if row[kind])
        if points:
            ax.plot(*zip(*points), style, label=kind)
    teacher, drop = 100 * result["teacher"]["test_accuracy"], result["target"]["max_drop_points"]
    ax.axhline(teacher, color="black", linewidth=1, label="teacher")
    ax.axhspan(teacher - drop, teacher, color="green", alpha=0.12, label=f"within {drop:g} points")
    if result["chosen"]:
        ax.scatter([result["chosen"][key]], [100 * result["chosen"]["test_accuracy"]], s=160, facecolors="none",
                   edgecolors="red", label="chosen")
    ax.set_xscale("log")
    ax.set_xlabel({"params": "parameters", "size_bytes": f"{result['format']} size (bytes)",
                   "latency_ms": "batch-1 latency (ms)"}[key])
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"compress: distilled and scratch students by {result['objective']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def frontier_plot(result, path):
    """Draw `frontier_figure(result)` to a PNG file (atomically); needs matplotlib."""
    _save_png(frontier_figure(result), path)
