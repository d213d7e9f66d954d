"""Data the user gives, refused with one line that says how to fix it, before TensorFlow is imported;
and `--num-classes`, which declares classes the training split lacks."""

import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import kdcli
from kdcli.artifacts import read_provenance

from conftest import assert_one_line_error, run_cli

RNG = np.random.default_rng(0)
X = RNG.random((60, 4)).astype(np.float32)


def npz(path, **arrays):
    np.savez(path, **arrays)
    return path


# --- labels: each refused with its fix ------------------------------------------------------------------------------

@pytest.mark.parametrize("arrays, contains", [
    # class ids from 1: num_classes would be 11 and class 0 empty
    ({"x": X, "y": np.arange(60) % 10 + 1}, "no training samples of class id 0 (y holds 1..10); class ids must run "
                                            "0..C-1, each with training samples (subtract 1 from y), or give "
                                            "--num-classes N"),
    ({"x": X, "y": np.array([0, 1, 3] * 20)}, "no training samples of class id 2 (y holds 0..3)"),
    ({"x_train": X, "y_train": np.arange(60) % 3 + 1, "x_test": X, "y_test": np.arange(60) % 3 + 1},
     "(subtract 1 from y_train and y_test)"),
    ({"x_train": X, "y_train": np.arange(60) % 2, "x_test": X, "y_test": np.arange(60) % 3},
     "no training samples of class id 2 (y_train holds 0..1); class ids must run 0..C-1, each with training samples "
     "(some are only in the test split)"),
    # training ids from 1 but class 0 in the test split: shifting would make it -1, so no such advice
    ({"x_train": X, "y_train": np.arange(60) % 2 + 1, "x_test": X, "y_test": np.arange(60) % 3},
     "no training samples of class id 0 (y_train holds 1..2); class ids must run 0..C-1, each with training samples "
     "(some are only in the test split)"),
    ({"x": X, "y": np.array(["cat", "dog", "eel"] * 20)},
     "y holds strings ('cat', 'dog', 'eel'); labels must be integer class ids 0..C-1: "
     "classes, y = np.unique(y, return_inverse=True)"),
    ({"x_train": X, "y_train": np.array(["a", "b"] * 30), "x_test": X, "y_test": np.array(["a", "b"] * 30)},
     "y_test = np.searchsorted(classes, y_test)"),
    ({"x": X, "y": np.array(["a", "b"] * 30, dtype=object)}, "y is an array of Python objects"),
    ({"x": X, "y": np.eye(3)[np.arange(60) % 3]}, "y is one-hot of shape (60, 3); labels must be integer class ids "
                                                  "of shape (N,): save y.argmax(1)"),
    ({"x": X, "y": np.full((60, 3), 1 / 3)}, "y is class probabilities of shape (60, 3)"),
    ({"x": X, "y": np.zeros(60, int)}, "the training labels hold a single class"),
], ids=["from-1", "gap", "split-from-1", "test-only-class", "test-only-zero", "strings", "split-strings", "objects", "one-hot",
        "probabilities", "single-class"])
def test_bad_labels_say_how_to_fix_them(tmp_path, arrays, contains):
    path = npz(tmp_path / "bad.npz", **arrays)
    r = run_cli("train-teacher", "--data", path, "--epochs", "1", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, contains)
    assert str(path) in r.stderr
    assert list(tmp_path.iterdir()) == [path]


def test_string_labels_in_an_h5_file(tmp_path):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = X, np.array([b"cat", b"dog"] * 30)
    r = run_cli("train-teacher", "--data", tmp_path / "d.h5", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "y holds strings ('cat', 'dog')")


def test_an_empty_class_folder_is_named(tmp_path):
    from PIL import Image

    for label, n in (("a", 4), ("b", 0), ("c", 4)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(n):
            Image.new("L", (4, 4), color=60 * i).save(tmp_path / "imgs" / label / f"{i}.png")
    r = run_cli("train-teacher", "--data", tmp_path / "imgs", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "no training samples of class id 1 (b)")


@pytest.mark.parametrize("name, contains", [
    ("data.csv", "a CSV file is not read as data; load it and save arrays: np.savez('data.npz', x=features, y=labels)"),
    ("data.tsv", "a TSV file is not read as data; load it and save arrays"),
    ("data.txt", "a single text file is not read as data (a folder of .txt files per class is)"),
    ("data.npy", "an .npy file holds one array, and data needs inputs and labels: np.savez("),
])
def test_files_kdcli_does_not_read_say_how_to_convert_them(tmp_path, name, contains):
    (tmp_path / name).write_text("f1,f2,label\n1,2,0\n")
    r = run_cli("train-teacher", "--data", tmp_path / name, "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, contains)
    r = run_cli("train-teacher", "--data", tmp_path / f"missing-{name}", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, f"missing-{name}: no such file")


def test_a_class_missing_only_from_the_test_split_is_fine(tmp_path):
    path = npz(tmp_path / "d.npz", x_train=X, y_train=np.arange(60) % 3, x_test=X[:4], y_test=np.array([0, 1, 0, 1]))
    assert kdcli.load_data(path).num_classes == 3


# --- every data error answers before TensorFlow is imported -----------------------------------------------------------

def _tensorflow_imported_after(*args):
    """Run the CLI in a fresh interpreter: its exit code, whether TensorFlow was imported, and its stderr."""
    code = (
        "import sys\n"
        "from kdcli.cli import app\n"
        "try:\n    app(sys.argv[1:], prog_name='kdcli')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print(code, 'tensorflow' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=120)
    code, imported = r.stdout.split()
    return int(code), imported == "True", r.stderr


@pytest.fixture
def files(tmp_path):
    """An empty `.keras` zip (enough for the checks before any model is loaded) and bad data files."""
    for name in ("t.keras", "m.keras"):
        zipfile.ZipFile(tmp_path / name, "w").close()
    (tmp_path / "data.csv").write_text("a,b\n1,0\n")
    npz(tmp_path / "from1.npz", x=X, y=np.arange(60) % 10 + 1)
    npz(tmp_path / "strings.npz", x=X, y=np.array(["cat", "dog"] * 30))
    npz(tmp_path / "onehot.npz", x=X, y=np.eye(3)[np.arange(60) % 3])
    return tmp_path


@pytest.mark.parametrize("args, contains", [
    (["train-teacher", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["soft-labels", "--teacher", "{d}/t.keras", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["distill", "--teacher", "{d}/t.keras", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["evaluate", "{d}/m.keras", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["export", "{d}/m.keras", "--quantize", "int8", "--data", "{d}/missing.npz"], "missing.npz: no such file"),
    (["distill", "--teacher", "{d}/t.keras", "--data", "digitz"], "unknown data set 'digitz'"),
    (["distill", "--teacher", "{d}/t.keras", "--data", "{d}/data.bin"], "unknown data set"),
    (["distill", "--teacher", "{d}/t.keras", "--data", "{d}/data.csv"], "a CSV file is not read as data"),
    (["distill", "--teacher", "{d}/t.keras", "--data", "{d}/from1.npz"], "no training samples of class id 0"),
    (["soft-labels", "--teacher", "{d}/t.keras", "--data", "{d}/strings.npz"], "y holds strings"),
    (["train-teacher", "--data", "{d}/onehot.npz"], "save y.argmax(1)"),
])
def test_data_errors_come_before_tensorflow(files, args, contains):
    code, imported, stderr = _tensorflow_imported_after(*(a.format(d=files) for a in args))
    assert code == 4 and contains in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("error: "), stderr
    assert not imported, "TensorFlow was imported before the data was checked"


# --- --num-classes ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, code, contains", [
    ("1", 2, "--num-classes must be a whole number of 2 or more, got 1"),
    ("three", 2, "invalid value for '--num-classes'"),
    ("3", 4, "the data has class id 3, but --num-classes 3 allows ids 0..2; give --num-classes 4"),
])
def test_bad_num_classes(tmp_path, value, code, contains):
    path = npz(tmp_path / "gap.npz", x=X, y=np.array([0, 1, 3] * 20))
    r = run_cli("train-teacher", "--data", path, "--num-classes", value, "--out", tmp_path / "t.keras")
    assert_one_line_error(r, code, contains)


@pytest.mark.slow
def test_num_classes_declares_a_class_absent_from_training_and_later_steps_see_it(tmp_path):
    """Classes 0, 1, 3 with --num-classes 5: the teacher has 5 outputs, the data record says so, and
    soft-labels, distill and evaluate, reading the data from provenance, see the same 5 classes."""
    rng = np.random.default_rng(1)
    y = np.array([0, 1, 3] * 40)
    x = (rng.normal(size=(120, 4)) + y[:, None]).astype(np.float32)
    data = npz(tmp_path / "gap.npz", x=x, y=y)
    t, s, p = tmp_path / "t.keras", tmp_path / "s.h5", tmp_path / "p.keras"
    r = run_cli("train-teacher", "--data", data, "--num-classes", "5", "--arch", "mlp", "--width", "8", "--depth",
                "1", "--epochs", "1", "--out", t)
    assert r.exit_code == 0, r.stderr
    record = read_provenance(t)["data"]
    assert record["num_classes"] == 5 and record["options"]["num_classes"] == 5
    assert kdcli.load_model(t).output_shape[-1] == 5

    r = run_cli("soft-labels", "--teacher", t, "--out", s)  # the data and its classes from the teacher's record
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_soft_labels(s).attrs["num_classes"] == 5
    r = run_cli("distill", "--soft-labels", s, "--student", "mlp", "--width", "8", "--depth", "1", "--epochs", "1",
                "--out", p)
    assert r.exit_code == 0, r.stderr
    assert read_provenance(p)["data"]["options"]["num_classes"] == 5
    assert kdcli.load_model(p).output_shape[-1] == 5
    r = run_cli("evaluate", t, p, "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["data"]["num_classes"] == 5

    # Without the declaration the gap is refused; a teacher of more classes than labels still sets them.
    r = run_cli("soft-labels", "--teacher", t, "--data", data, "--num-classes", "4", "--out", tmp_path / "s4.h5")
    assert_one_line_error(r, 4, "--num-classes 4 (given, or recorded with the data), but t.keras has 5 classes")
    full = npz(tmp_path / "full.npz", x=x, y=np.arange(120) % 3)
    r = run_cli("soft-labels", "--teacher", t, "--data", full, "--out", tmp_path / "s3.h5")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_soft_labels(tmp_path / "s3.h5").attrs["num_classes"] == 5
