"""Data in memory is held once: an .npz is read into aligned arrays, which TensorFlow's input pipeline
uses as they are, so that training adds no copy of the inputs."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest

import kdcli
from kdcli.data.columns import ALIGNMENT

# Runs one kdcli command in this process, then prints its peak resident memory (VmHWM, KiB).
PEAK_OF_KDCLI = """
import sys
from kdcli.cli import app
try:
    app(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def images(path, n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=rng.integers(0, 10, n), x_test=x[:200], y_test=rng.integers(0, 10, 200))
    return x


def test_an_npz_is_read_into_aligned_arrays_that_tensorflow_shares(tmp_path):
    x = images(tmp_path / "d.npz", 500)
    data = kdcli.load_data(str(tmp_path / "d.npz"))
    column = data.train.x
    np.testing.assert_array_equal(column.array, x)
    assert column.array.ctypes.data % ALIGNMENT == 0
    tensor = column.tensor()
    column.array[3, 4, 5] = 255 - column.array[3, 4, 5]  # one memory: the tensor sees the change
    assert int(tensor[3, 4, 5]) == int(column.array[3, 4, 5])


def test_npz_members_of_every_layout_read_back_as_saved(tmp_path):
    rng = np.random.default_rng(1)
    x = np.asfortranarray(rng.normal(size=(60, 5)).astype(np.float64))
    y = np.arange(60) % 3
    np.savez_compressed(tmp_path / "c.npz", x=x, y=y)
    np.savez(tmp_path / "big-endian.npz", x=x.astype(">f4"), y=y)  # read aligned, but copied into TensorFlow
    data = kdcli.load_data(str(tmp_path / "c.npz"))
    read = np.concatenate([data.train.arrays()[0], data.test.arrays()[0]])
    assert read.shape == (60, 5) and sorted(map(tuple, read)) == sorted(map(tuple, x))
    swapped = kdcli.load_data(str(tmp_path / "big-endian.npz"))
    batches = np.concatenate([b[0].numpy() for b in swapped.train.batches(16)])
    np.testing.assert_array_equal(batches, swapped.train.arrays()[0].astype(np.float32))
    assert sorted(map(tuple, np.concatenate([batches, swapped.test.arrays()[0]]))) == \
        sorted(map(tuple, x.astype(np.float32)))


def test_a_cut_npz_member_is_a_one_line_error(tmp_path):
    from kdcli.errors import KdcliError

    x = np.zeros((100, 8), np.float32)
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:
        z.writestr("x.npy", _npy_bytes(x)[:-40])  # the array's last bytes are missing
        z.writestr("y.npy", _npy_bytes(np.arange(100) % 2))
    with pytest.raises(KdcliError, match=r"cut.npz: cannot read .npz file \(x.npy ends 40 bytes early; is the file cut short\?\)"):
        kdcli.load_data(str(tmp_path / "cut.npz"))


def _npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def peak_mib(*args):
    r = subprocess.run([sys.executable, "-c", PEAK_OF_KDCLI, *map(str, args), "--quiet"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.strip().splitlines()[-1]) / 1024


@pytest.mark.slow
def test_training_on_arrays_in_memory_holds_them_once(tmp_path):
    big, small = 160_000, 2_000  # 120 MiB of inputs, and a baseline with next to none
    images(tmp_path / "big.npz", big)
    images(tmp_path / "small.npz", small)
    peaks = {}
    for name in ("small", "big"):
        peaks[name] = peak_mib("train-teacher", "--data", tmp_path / f"{name}.npz", "--arch", "mlp", "--epochs", "1",
                               "--batch-size", "512", "--out", tmp_path / f"{name}.keras")
    array_mib = (big - small) * 28 * 28 / 2**20
    assert peaks["big"] - peaks["small"] <= 1.3 * array_mib, (peaks, array_mib)
