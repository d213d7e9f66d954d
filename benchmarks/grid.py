"""The resumable grid of the accuracy benchmarks: data sets × variants × seeds, one measurement a cell.

A `Grid` keeps its cells in a JSON file, `{set: {"runs": {variant: {seed: record}}, ...}}` (other keys of
a set's entry are the benchmark's own, e.g. its teacher's accuracy). `run(measure)` calls
`measure(set, variant, seed)` for each cell not in the file yet and saves the file after each, by writing
a temporary file and renaming it over the old one, so a run cut short (killed, out of time, a failed
command) keeps every cell done and a rerun measures only the others. `parser()` is the command line of
such a benchmark: `--sets`, `--variants` (or the benchmark's name for them), `--seeds` choose a part of
the grid; `--render` measures nothing and only writes the Markdown section from the stored cells.
"""

import argparse
import json
import os
import tempfile
from pathlib import Path


def runs_key(name, variant, seed):
    """Where a cell lives in the JSON, by default: `results[set]["runs"][variant][str(seed)]`."""
    return name, "runs", variant, str(seed)


class Grid:
    """Sets × variants × seeds, with their results in the JSON file `path` (read now when it exists).

    `variants` or `seeds` may be None for a grid without that axis: `measure` then gets None for it.
    `seeds_first`: for each set, all variants of a seed before the next seed (default: all seeds of a
    variant before the next variant). `key(set, variant, seed)`: the path of keys of a cell in the JSON
    (default `runs_key`). `redo(record)`: whether a stored cell is to be measured again (default: never).
    `workdir`: where `folder(set)` makes each set's folder (None: a temporary folder, removed after `run`).
    """

    def __init__(self, path, sets, variants=None, seeds=None, *, seeds_first=False, key=runs_key, redo=None,
                 workdir=None):
        self.path = Path(path)
        self.sets, self.variants, self.seeds = list(sets), variants, seeds
        self.seeds_first, self.key, self.redo, self.workdir = seeds_first, key, redo, workdir
        self.results = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._root = None

    def entry(self, name):
        """The JSON entry of data set `name` (made when absent): its cells under "runs", and its own keys."""
        return self.results.setdefault(name, {"runs": {}})

    def cell(self, name, variant, seed):
        """The stored record of a cell, or None."""
        node = self.results
        for k in self.key(name, variant, seed):
            if not isinstance(node, dict) or k not in node:
                return None
            node = node[k]
        return node

    def done(self, name, variant, seed):
        """Whether a cell is stored (and not one that `redo` says to measure again)."""
        record = self.cell(name, variant, seed)
        return record is not None and not (self.redo and self.redo(record))

    def cells(self, name):
        """The (variant, seed) pairs of data set `name`, in the order they are measured."""
        variants = [None] if self.variants is None else self.variants
        seeds = [None] if self.seeds is None else self.seeds
        if self.seeds_first:
            return [(v, s) for s in seeds for v in variants]
        return [(v, s) for v in variants for s in seeds]

    def missing(self):
        """The cells not done yet, (set, variant, seed) in the order `run` measures them."""
        return [(n, v, s) for n in self.sets for v, s in self.cells(n) if not self.done(n, v, s)]

    def store(self, name, variant, seed, record):
        """Put `record` in its cell (not saved yet)."""
        *parents, last = self.key(name, variant, seed)
        node = self.results
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = record

    def save(self):
        """Write the results whole: to a temporary file in the same folder, then renamed over `path`, so the
        file is always the previous whole version or the new one, never half of one."""
        text = json.dumps(self.results, indent=2)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".partial", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, self.path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def folder(self, name):
        """Data set `name`'s folder of the work folder (made when absent); only while `run` runs."""
        if self._root is None:
            raise RuntimeError("Grid.folder is only there while Grid.run runs")
        folder = self._root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def run(self, measure, prepare=None):
        """Measure each missing cell: `record = measure(set, variant, seed)`, stored and saved at once.

        `prepare(set)` is called before the first missing cell of each set (none for a set whose cells
        are all done); when it returns False the set is skipped (e.g. its data is not there). An exception
        from `measure` stops the run, and the cells saved before it stay.
        """
        with tempfile.TemporaryDirectory() as tmp:
            self._root = Path(self.workdir or tmp)
            try:
                for name in self.sets:
                    todo = [(v, s) for v, s in self.cells(name) if not self.done(name, v, s)]
                    if not todo or (prepare is not None and prepare(name) is False):
                        continue
                    for variant, seed in todo:
                        self.store(name, variant, seed, measure(name, variant, seed))
                        self.save()
            finally:
                self._root = None


def parser(description, sets, variants=None, *, json_default, keeps="data and models", seeds=(0, 1, 2),
           sets_name="sets", variants_name="variants"):
    """The command line of a grid benchmark: `--SETS`, `--VARIANTS` (when the grid has variants), `--seeds`
    (when `seeds`, their default), `--workdir` (which keeps `keeps`), `--json`, `--markdown` and `--render`."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(f"--{sets_name}", nargs="+", choices=sets, default=list(sets), metavar=sets_name.upper(),
                   help=f"of {', '.join(sets)} (default: all)")
    if variants is not None:
        p.add_argument(f"--{variants_name}", nargs="+", choices=variants, default=list(variants),
                       metavar=variants_name.upper(), help=f"of {', '.join(map(repr, variants))} (default: all)")
    if seeds:
        p.add_argument("--seeds", type=int, nargs="+", default=list(seeds),
                       help=f"default: {' '.join(map(str, seeds))}")
    p.add_argument("--workdir", help=f"keeps {keeps} (default: a temporary folder)")
    p.add_argument("--json", default=str(json_default),
                   help=f"the raw results, saved after every cell; cells there are not measured again "
                        f"(default: {Path(json_default).name} beside this script)")
    p.add_argument("--markdown", help="also write the Markdown section to this file")
    p.add_argument("--render", action="store_true", help="measure nothing: only write the section from --json")
    return p


def write_section(lines, markdown=None):
    """Print a benchmark's Markdown section, and write it to `markdown` when given."""
    print("\n".join(lines))
    if markdown:
        Path(markdown).write_text("\n".join(lines) + "\n")
