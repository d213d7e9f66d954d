"""benchmarks/grid.py: the resumable grid of the accuracy benchmarks (sets × variants × seeds in a JSON
file), with a fake measurement: no TensorFlow, no kdcli run."""

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import grid  # noqa: E402  (benchmarks/ is no package: its folder on sys.path, as its scripts have it)

SETS, VARIANTS, SEEDS = ("a", "b"), ("x", "y"), (0, 1)
ALL = [(n, v, s) for n in SETS for v in VARIANTS for s in SEEDS]


class Fake:
    """A measurement that records its calls; raises once it has measured `fail_after` cells."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = [], fail_after

    def __call__(self, name, variant, seed):
        if self.fail_after is not None and len(self.calls) == self.fail_after:
            raise KeyboardInterrupt("cut short")
        self.calls.append((name, variant, seed))
        return {"accuracy": len(self.calls) / 10, "cell": f"{name}/{variant}/{seed}"}


def stored(path):
    """The (set, variant, seed) cells in the JSON file `path`."""
    results = json.loads(Path(path).read_text())
    return sorted((n, v, int(s)) for n, e in results.items() for v, cells in e["runs"].items() for s in cells)


def test_a_run_measures_every_cell_once_in_order_and_keeps_them_in_the_json(tmp_path):
    path, fake = tmp_path / "r.json", Fake()
    grid.Grid(path, SETS, VARIANTS, SEEDS).run(fake)
    assert fake.calls == ALL  # each set's variants in turn, a variant's seeds in turn
    results = json.loads(path.read_text())
    assert results["b"]["runs"]["x"]["1"] == {"accuracy": 0.6, "cell": "b/x/1"}  # seeds are keys as strings
    assert stored(path) == sorted(ALL)
    again = Fake()
    g = grid.Grid(path, SETS, VARIANTS, SEEDS)
    assert g.missing() == []
    g.run(again)
    assert again.calls == []


def test_seeds_first_measures_all_variants_of_a_seed_before_the_next():
    g = grid.Grid("unused.json", ["a"], VARIANTS, SEEDS, seeds_first=True)
    assert g.cells("a") == [("x", 0), ("y", 0), ("x", 1), ("y", 1)]


def test_a_run_cut_short_keeps_its_cells_and_a_rerun_measures_only_the_others(tmp_path):
    path = tmp_path / "r.json"
    first = Fake(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        grid.Grid(path, SETS, VARIANTS, SEEDS).run(first)
    assert stored(path) == sorted(first.calls) == sorted(ALL[:2])
    second = Fake()
    g = grid.Grid(path, SETS, VARIANTS, SEEDS)
    assert g.missing() == ALL[2:]
    g.run(second)
    assert second.calls == ALL[2:]
    assert stored(path) == sorted(ALL)
    results = json.loads(path.read_text())
    assert results["a"]["runs"]["x"]["0"]["cell"] == "a/x/0"  # the first run's cells are kept as they were


def test_prepare_runs_once_before_a_sets_first_missing_cell_and_can_skip_the_set(tmp_path):
    path = tmp_path / "r.json"
    grid.Grid(path, ["a"], VARIANTS, SEEDS).run(Fake())  # set a is done
    prepared, fake = [], Fake()

    def prepare(name):
        prepared.append(name)
        return name != "c"  # c's data is not there

    folders = []
    g = grid.Grid(path, ["a", "b", "c"], VARIANTS, SEEDS, workdir=tmp_path / "work")
    g.run(lambda n, v, s: folders.append(g.folder(n)) or fake(n, v, s), prepare)
    assert prepared == ["b", "c"]
    assert fake.calls == [("b", v, s) for v in VARIANTS for s in SEEDS]
    assert set(folders) == {tmp_path / "work" / "b"} and folders[0].is_dir()
    assert "c" not in json.loads(path.read_text())


def test_sets_variants_and_seeds_on_the_command_line_choose_part_of_the_grid(tmp_path):
    parser = grid.parser("test", SETS, VARIANTS, json_default=tmp_path / "r.json")
    args = parser.parse_args([])
    assert (args.sets, args.variants, args.seeds, args.render) == (list(SETS), list(VARIANTS), [0, 1, 2], False)
    args = parser.parse_args(["--sets", "b", "--variants", "y", "--seeds", "1", "2", "--render"])
    assert (args.sets, args.variants, args.seeds, args.render, args.json) == (["b"], ["y"], [1, 2], True,
                                                                            str(tmp_path / "r.json"))
    fake = Fake()
    grid.Grid(args.json, args.sets, args.variants, args.seeds).run(fake)
    assert fake.calls == [("b", "y", 1), ("b", "y", 2)]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sets", "z"])
    rows = grid.parser("test", SETS, VARIANTS, json_default="r.json", variants_name="rows").parse_args(["--rows", "x"])
    assert rows.rows == ["x"]
    kinds = grid.parser("test", SETS, json_default="r.json", seeds=None, sets_name="kinds").parse_args([])
    assert kinds.kinds == list(SETS) and not hasattr(kinds, "seeds") and not hasattr(kinds, "variants")


def test_render_reads_the_cells_and_writes_nothing(tmp_path):
    path = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        grid.Grid(path, SETS, VARIANTS, SEEDS).run(Fake(fail_after=3))
    before = path.read_bytes()
    g = grid.Grid(path, SETS, VARIANTS, [0, 1, 2])
    assert g.cell("a", "y", 0)["cell"] == "a/y/0" and g.cell("a", "y", 1) is None and g.cell("q", "x", 0) is None
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    grid.write_section(["## T", "", "| a |"], tmp_path / "t.md")
    assert (tmp_path / "t.md").read_text() == "## T\n\n| a |\n"


def test_the_json_is_replaced_whole_never_written_in_place(tmp_path, monkeypatch):
    path, seen = tmp_path / "r.json", []
    replace = os.replace

    def checked_replace(src, dst):
        # Just before the rename: the new file is whole, and the old one is still the previous whole version.
        seen.append((stored(src), stored(dst) if Path(dst).exists() else None))
        replace(src, dst)

    monkeypatch.setattr(grid.os, "replace", checked_replace)
    grid.Grid(path, ["a"], VARIANTS, SEEDS).run(Fake())
    assert [len(new) for new, _ in seen] == [1, 2, 3, 4]
    assert [old for _, old in seen] == [None] + [new for new, _ in seen[:-1]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary file left


def test_a_save_cut_short_while_writing_keeps_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    grid.Grid(path, ["a"], ["x"], SEEDS).run(Fake())
    before = path.read_bytes()

    def cut(fd):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(grid.os, "fsync", cut)
    g = grid.Grid(path, ["a"], VARIANTS, SEEDS)
    with pytest.raises(KeyboardInterrupt):
        g.run(Fake())
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    g.results["a"]["runs"]["y"]["9"] = object()  # not JSON: fails before anything is written
    monkeypatch.undo()
    with pytest.raises(TypeError):
        g.save()
    assert path.read_bytes() == before


def test_a_custom_key_and_redo_give_a_one_axis_grid_whose_failed_cells_are_measured_again(tmp_path):
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps({"minutes": 1.0, "kinds": {"A": {"ok": 1}, "B": {"teacher_error": "boom"}}}))
    g = grid.Grid(path, ["A", "B", "C"], key=lambda name, variant, seed: ("kinds", name),
                  redo=lambda record: "teacher_error" in record)
    assert g.missing() == [("B", None, None), ("C", None, None)]
    fake = Fake()
    g.run(fake)
    assert fake.calls == [("B", None, None), ("C", None, None)]
    results = json.loads(path.read_text())
    assert results["minutes"] == 1.0 and results["kinds"]["A"] == {"ok": 1}
    assert results["kinds"]["B"]["cell"] == "B/None/None"


@pytest.mark.parametrize(("name", "variants"), [("budgets", "VARIANTS"), ("teachers", "VARIANTS"), ("paying", "ROWS")])
def test_the_stored_benchmark_results_count_as_done_cells_under_the_scripts_names(name, variants):
    path = BENCHMARKS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"no {path.name}")
    results = json.loads(path.read_text())
    sets = [n for n, e in results.items() if isinstance(e, dict)]  # beside them: "notes", a list of paragraphs
    cells = [(n, v, int(s)) for n in sets for v, seeds in results[n]["runs"].items() for s in seeds]
    assert cells
    assert {v for _, v, _ in cells} <= set(getattr(importlib.import_module(name), variants))
    assert all(isinstance(p, str) for p in results.get("notes", []))
    g = grid.Grid(path, sets, sorted({v for _, v, _ in cells}), sorted({s for _, _, s in cells}))
    assert all(g.done(*cell) for cell in cells)
    assert len(g.missing()) == len(g.sets) * len(g.variants) * len(g.seeds) - len(cells)


def test_cells_stored_under_an_earlier_variant_name_are_read_under_the_scripts_name_in_place():
    import budgets

    results = {"d": {"runs": {"today": {"0": {"seconds": 2}}, "auto": {"0": {"seconds": 3}}}, "epochs_old": 30},
               "notes": ["This run: one process.", "Findings: none."]}
    assert budgets.rename(results) is results
    assert list(results["d"]["runs"]) == ["fixed", "auto"] and results["d"]["runs"]["fixed"] == {"0": {"seconds": 2}}
    assert results["d"]["epochs_fixed"] == 30 and "epochs_old" not in results["d"]
    again = json.loads(json.dumps(results))
    assert budgets.rename(again) == results  # a second reading changes nothing
    assert budgets.notes(results) == ["", "This run: one process.", "", "Findings: none."]
