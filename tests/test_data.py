"""Data loading: the bundled sample, npz and h5 files, fingerprints, validation."""

import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest

import kdcli
from kdcli.data import stratified_split

from conftest import assert_one_line_error, run_cli


def test_digits_is_the_fixed_stratified_split():
    data = kdcli.load_data("digits")
    assert data.x_train.shape == (1438, 8, 8) and data.x_test.shape == (359, 8, 8)
    assert data.num_classes == 10
    assert data.x_train.max() == 16 and data.x_train.min() == 0
    train_share = np.bincount(data.y_train) / (np.bincount(data.y_train) + np.bincount(data.y_test))
    assert np.all(np.abs(train_share - 0.8) < 0.01)  # every class split 80/20
    assert kdcli.load_data("digits").fingerprint == data.fingerprint


def test_fingerprint_is_stable_across_processes_and_changes_with_the_data(tmp_path):
    data = kdcli.load_data("digits")
    code = "import kdcli; print(kdcli.load_data('digits').fingerprint)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == data.fingerprint
    arrays = {k: getattr(data, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    np.savez(tmp_path / "same.npz", **arrays)
    assert kdcli.load_data(tmp_path / "same.npz").fingerprint == data.fingerprint
    x = arrays["x_train"].copy()
    x[100, 3, 3] += 1
    np.savez(tmp_path / "x.npz", **(arrays | {"x_train": x}))
    assert kdcli.load_data(tmp_path / "x.npz").fingerprint != data.fingerprint
    y = arrays["y_train"].copy()
    y[5] = (y[5] + 1) % 10
    np.savez(tmp_path / "y.npz", **(arrays | {"y_train": y}))
    assert kdcli.load_data(tmp_path / "y.npz").fingerprint != data.fingerprint
    x_test = arrays["x_test"].copy()
    x_test[0] += 1  # the fingerprint identifies the training split only
    np.savez(tmp_path / "t.npz", **(arrays | {"x_test": x_test}))
    assert kdcli.load_data(tmp_path / "t.npz").fingerprint == data.fingerprint


def test_npz_with_x_y_is_split_stratified_and_seeded(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((200, 6)).astype(np.float32), np.repeat([0, 1], 100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    a = kdcli.load_data(tmp_path / "d.npz", val_split=0.25)
    b = kdcli.load_data(tmp_path / "d.npz", val_split=0.25)
    assert len(a.y_test) == 50 and np.bincount(a.y_test).tolist() == [25, 25]
    np.testing.assert_array_equal(a.x_train, b.x_train)
    train, test = stratified_split(y, 0.25, 0)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 200


def test_h5_with_split_keys(tmp_path):
    digits = kdcli.load_data("digits")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        for k in ("x_train", "y_train", "x_test", "y_test"):
            f[k] = getattr(digits, k)
    data = kdcli.load_data(tmp_path / "d.h5")
    assert data.fingerprint == digits.fingerprint


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"a": np.zeros((4, 2))}, "expected arrays x_train, y_train, x_test, y_test (or x, y); found a"),
        ({"x": np.zeros((10, 2)), "y": np.zeros(9, int)}, "x has 10 samples but y has 9"),
        ({"x": np.zeros((10, 2)), "y": np.full(10, 0.5)}, "y must hold integer class ids"),
        ({"x": np.zeros((10, 2)), "y": np.array([0, 1] * 4 + [-1, 1])}, "negative labels"),
        ({"x": np.full((10, 2), np.nan), "y": np.array([0, 1] * 5)}, "NaN or infinite values"),
        ({"x_train": np.zeros((0, 2)), "y_train": np.zeros(0, int), "x_test": np.zeros((2, 2)),
          "y_test": np.array([0, 1])}, "the train split is empty"),
    ],
)
def test_bad_data_files(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    r = run_cli("train-teacher", "--data", tmp_path / "bad.npz", "--epochs", "1", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, message)
    assert str(tmp_path / "bad.npz") in r.stderr


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "ok.npz", x=np.zeros((100, 4)), y=np.arange(100) % 2)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:300])
    r = run_cli("train-teacher", "--data", tmp_path / "cut.npz", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "cannot read .npz file")


def test_digits_ships_inside_the_wheel(tmp_path):
    """`--data digits` reads package data, so it works from an installed wheel."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(root)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("kdcli-*.whl")
    with zipfile.ZipFile(wheel) as z:
        member = z.read("kdcli/samples/digits.npz")
    assert member == (root / "samples" / "digits.npz").read_bytes()
