"""Every --data form through the four CLI steps, and bad data refused clearly."""

import gzip
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import kdcli
from kdcli.data import SCAN_ROWS, H5Column

from conftest import assert_one_line_error, run_cli, talk


def blob_images(n, size=10, classes=3, seed=0):
    """uint8 images whose class is a bright square in one of `classes` places."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 60, size=(n, size, size), dtype=np.uint8)
    for i, c in enumerate(y):
        r = (c * 3) % (size - 3)
        x[i, r:r + 3, r:r + 3] = 250
    return x, y


def run_pipeline(tmp_path, data, arch="cnn", extra=()):
    """train-teacher, soft-labels, distill, evaluate; returns the evaluation report."""
    t, s, p = tmp_path / "t.keras", tmp_path / "s.h5", tmp_path / "p.keras"
    steps = [
        ["train-teacher", "--data", data, "--arch", arch, "--width", "8", "--depth", "1", "--epochs", "8", "--batch-size", "16", "--learning-rate", "0.01", "--out", t, *extra],
        ["soft-labels", "--teacher", t, "--out", s],
        ["distill", "--soft-labels", s, "--student", "mlp", "--width", "16", "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.01", "--out", p],
    ]
    for args in steps:
        r = run_cli(*args)
        assert r.exit_code == 0, (args[0], r.stderr)
        assert r.stdout.strip() == str(args[args.index("--out") + 1])
    r = run_cli("evaluate", t, p, "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.slow
def test_npz_of_images(tmp_path):
    x, y = blob_images(150)
    np.savez(tmp_path / "images.npz", x=x, y=y)
    report = run_pipeline(tmp_path, tmp_path / "images.npz")
    assert report["data"]["input_shape"] == [10, 10] and report["data"]["n_test"] == 30
    teacher, student = report["models"]
    assert teacher["accuracy"] > 0.8 and student["accuracy"] > 0.8


@pytest.mark.slow
def test_folder_of_png_files(tmp_path):
    from PIL import Image

    x, y = blob_images(90, size=12)
    for i, (img, label) in enumerate(zip(x, y)):
        folder = tmp_path / "pngs" / f"class_{'abc'[label]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).convert("RGB").save(folder / f"{i:03d}.png")
    report = run_pipeline(tmp_path, tmp_path / "pngs")
    assert report["data"]["input_shape"] == [12, 12, 3]
    assert report["data"]["class_names"] == ["class_a", "class_b", "class_c"]
    assert report["models"][0]["accuracy"] > 0.8
    grey = kdcli.load_data(tmp_path / "pngs", image_size=(8, 6), color_mode="grayscale")
    assert grey.input_shape == (8, 6, 1) and grey.x_train.shape == (72, 8, 6, 1)


def test_image_folder_with_train_and_test_folders(tmp_path):
    from PIL import Image

    for part, n in (("train", 4), ("test", 2)):
        for label in ("cat", "dog"):
            folder = tmp_path / "imgs" / part / label
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("L", (5, 7), color=40 * i).save(folder / f"{i}.png")
    data = kdcli.load_data(tmp_path / "imgs")
    assert (len(data.train), len(data.test), data.input_shape) == (8, 4, (7, 5, 1))
    assert data.y_test.tolist() == [0, 0, 1, 1]
    before = data.fingerprint
    Image.new("L", (5, 7), color=99).save(tmp_path / "imgs" / "train" / "dog" / "0.png")  # edit a file
    assert kdcli.load_data(tmp_path / "imgs").fingerprint != before
    (tmp_path / "imgs" / "train" / "dog" / "0.png").unlink()  # remove a file
    assert len(kdcli.load_data(tmp_path / "imgs").train) == 7


@pytest.mark.slow
def test_h5_file(tmp_path):
    x, y = blob_images(150, seed=1)
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x_train"], f["y_train"], f["x_test"], f["y_test"] = x[:120], y[:120], x[120:], y[120:]
    report = run_pipeline(tmp_path, tmp_path / "data.h5")
    assert report["data"]["n_train"] == 120
    assert report["models"][1]["accuracy"] > 0.8


@pytest.mark.slow
def test_tabular_features_with_two_classes(tmp_path):
    rng = np.random.default_rng(0)
    y = np.arange(300) % 2
    x = rng.normal(size=(300, 12)).astype(np.float32) * 5 + 100  # far from zero: normalisation matters
    x[:, 0] += np.where(y == 1, 15.0, -15.0)
    np.savez(tmp_path / "tabular.npz", x=x, y=y)
    report = run_pipeline(tmp_path, tmp_path / "tabular.npz", arch="mlp")
    assert report["data"]["input_shape"] == [12] and report["data"]["num_classes"] == 2
    assert report["models"][0]["accuracy"] > 0.85 and report["models"][1]["accuracy"] > 0.85


def test_cnn_on_flat_features_is_refused(tmp_path):
    np.savez(tmp_path / "flat.npz", x=np.zeros((20, 5), np.float32), y=np.arange(20) % 2)
    r = run_cli("train-teacher", "--data", tmp_path / "flat.npz", "--arch", "cnn", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "the cnn architecture needs images (H, W) or (H, W, C), or signals (L, C)")


@pytest.mark.slow
def test_preprocessing_travels_with_the_model(tmp_path):
    """A plain Keras predict on raw uint8 inputs agrees with kdcli's evaluation."""
    import keras

    x, y = blob_images(150)
    np.savez(tmp_path / "raw.npz", x_train=x[:120], y_train=y[:120], x_test=x[120:], y_test=y[120:])
    r = run_cli("train-teacher", "--data", tmp_path / "raw.npz", "--arch", "mlp", "--epochs", "5", "--out", tmp_path / "t.keras")
    assert r.exit_code == 0
    model = keras.models.load_model(tmp_path / "t.keras")
    plain = np.mean(np.argmax(model.predict(x[120:].astype("float32"), verbose=0), -1) == y[120:])
    assert kdcli.read_provenance(tmp_path / "t.keras")["metrics"]["test_accuracy"] == pytest.approx(plain)
    assert plain > 0.8  # the model learned, on raw pixel values 0..255


def test_later_steps_reuse_the_recorded_split(tmp_path):
    x, y = blob_images(100)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    t = tmp_path / "t.keras"
    assert run_cli("train-teacher", "--data", tmp_path / "d.npz", "--val-split", "0.3", "--arch", "mlp",
                   "--epochs", "1", "--out", t).exit_code == 0
    r = run_cli("evaluate", t, "--json", "-", "--latency-runs", "10")
    assert json.loads(r.stdout)["data"]["n_test"] == 30


def test_keras_dataset_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    r = run_cli("train-teacher", "--data", "mnist", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "mnist is not in Keras' cache and kdcli does not download: put https://")
    assert str(tmp_path / "keras" / "datasets" / "mnist.npz") in r.stderr
    cache = tmp_path / "keras" / "datasets"
    cache.mkdir(parents=True)
    x, y = blob_images(60, size=28)
    np.savez(cache / "mnist.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    assert kdcli.load_data("mnist").x_train.shape == (40, 28, 28)
    fashion = cache / "fashion-mnist"
    fashion.mkdir()
    for stem, arr, header in (("train-images-idx3", x[:40], 16), ("train-labels-idx1", y[:40], 8),
                              ("t10k-images-idx3", x[40:], 16), ("t10k-labels-idx1", y[40:], 8)):
        with gzip.open(fashion / f"{stem}-ubyte.gz", "wb") as f:
            f.write(bytes(header) + arr.astype(np.uint8).tobytes())
    data = kdcli.load_data("fashion_mnist")
    np.testing.assert_array_equal(data.x_test, x[40:])
    np.testing.assert_array_equal(data.y_train, y[:40])


def test_h5_inputs_are_streamed_in_bounded_reads(tmp_path, monkeypatch):
    n = 3 * SCAN_ROWS
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("x", data=rng.normal(size=(n, 4)).astype(np.float32), chunks=(1024, 4))
        f["y"] = np.arange(n) % 2
    reads = []
    original = H5Column.read
    monkeypatch.setattr(H5Column, "read", lambda self, rows: reads.append(len(rows)) or original(self, rows))
    data = kdcli.load_data(tmp_path / "big.h5")
    assert isinstance(data.train.x, H5Column)
    model = kdcli.build_model("mlp", data, width=4, depth=1)
    kdcli.train(model, data, epochs=1, batch_size=256)
    assert reads and max(reads) <= SCAN_ROWS < n


# --- bad data -----------------------------------------------------------------


def test_truncated_h5(tmp_path):
    with h5py.File(tmp_path / "ok.h5", "w") as f:
        f["x"], f["y"] = np.zeros((500, 4)), np.arange(500) % 2
    (tmp_path / "cut.h5").write_bytes((tmp_path / "ok.h5").read_bytes()[:1000])
    r = run_cli("train-teacher", "--data", tmp_path / "cut.h5", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "cannot read .h5 file")


def test_unknown_name_lists_the_known_ones(tmp_path):
    r = run_cli("train-teacher", "--data", "imagenet", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "unknown data set 'imagenet': give one of digits, mnist, fashion_mnist, cifar10, cifar100")


def test_labels_beyond_the_teachers_classes(tmp_path, pipeline):
    digits = kdcli.load_data("digits")
    y = digits.y_train.copy()
    y[:3] = 10, 11, 12  # every id up to 12 has training samples
    np.savez(tmp_path / "d.npz", x_train=digits.x_train, y_train=y, x_test=digits.x_test, y_test=digits.y_test)
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--data", tmp_path / "d.npz", "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "labels go up to 12, but teacher.keras has 10 classes")


def test_image_folder_with_one_class(tmp_path):
    from PIL import Image

    (tmp_path / "imgs" / "only").mkdir(parents=True)
    Image.new("L", (4, 4)).save(tmp_path / "imgs" / "only" / "a.png")
    r = run_cli("train-teacher", "--data", tmp_path / "imgs", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "at least two classes, found 1")


def test_unreadable_image(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 4)).save(tmp_path / "imgs" / label / f"{i}.png")
    (tmp_path / "imgs" / "b" / "broken.png").write_bytes(b"not a png at all")
    r = run_cli("train-teacher", "--data", tmp_path / "imgs", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 4, "broken.png: unreadable image")


@pytest.mark.slow
def test_nan_found_while_streaming_is_one_line_in_a_real_process(tmp_path):
    """NaN in an .h5 is found batch by batch; TensorFlow's own logs must not leak a traceback."""
    x = np.ones((200, 3), np.float32)
    x[150, 1] = np.nan
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["x"], f["y"] = x, np.arange(200) % 2
    r = subprocess.run(
        [sys.executable, "-m", "kdcli", "train-teacher", "--data", str(tmp_path / "nan.h5"), "--arch", "mlp",
         "--epochs", "1", "--out", str(tmp_path / "t.keras")],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 4, r.stderr
    assert talk(r.stderr) == [f"error: {tmp_path / 'nan.h5'}: x holds NaN or infinite values"]
    assert not (tmp_path / "t.keras").exists()


def test_cifar10_from_the_cache(tmp_path, monkeypatch):
    import pickle

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 255, (4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = kdcli.load_data("cifar10")
    assert data.input_shape == (32, 32, 3) and len(data.train) == 20 and len(data.test) == 4


@pytest.mark.parametrize("batch", [64, 100])
def test_streamed_shuffle_visits_every_sample_once_with_aligned_columns(tmp_path, batch):
    """Windowed shuffling of on-disk data: a permutation per epoch, x, y and extra columns aligned,
    full batches but the last, across windows, whether or not the batch size divides a window."""
    from kdcli.data.batching import BLOCK_ROWS, WINDOW_BLOCKS

    n = 2 * WINDOW_BLOCKS * BLOCK_ROWS + 123  # more than two windows
    ids = np.arange(n, dtype=np.float32)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"], f["t"] = ids[:, None], np.arange(n) % 2, np.stack([ids, -ids], axis=1)
    data = kdcli.load_data(tmp_path / "d.h5", val_split=0.1)
    extra = H5Column(tmp_path / "d.h5", "t")
    extra_rows = data.train.rows  # the extra column is indexed by split sample, like soft labels
    soft = kdcli.data.ArrayColumn(extra.read(extra_rows), "t")
    orders = []
    for seed in (1, 2):
        xs, ys, ts = [], [], []
        for x, y, t in data.train.batches(batch, shuffle_seed=seed, extra=(soft,)):
            xs.append(x.numpy()[:, 0]), ys.append(y.numpy()), ts.append(t.numpy())
        assert [len(b) for b in xs[:-1]] == [batch] * (len(xs) - 1) and 0 < len(xs[-1]) <= batch
        x, y, t = np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)
        assert sorted(x.tolist()) == sorted(ids[data.train.rows].tolist())  # each training sample once
        np.testing.assert_array_equal(y, x.astype(int) % 2)
        np.testing.assert_array_equal(t[:, 0], x)
        assert np.mean(np.abs(np.diff(x)) == 1) < 0.1  # shuffled, not runs of neighbours
        orders.append(x)
    assert not np.array_equal(*orders)
    first = [b[0].numpy()[:, 0] for b in data.train.batches(batch)]
    np.testing.assert_array_equal(np.concatenate(first), ids[data.train.rows])  # unshuffled: in order


def test_large_in_memory_arrays_are_read_by_windows_into_the_same_batches(monkeypatch):
    """In-memory arrays that TensorFlow would copy beyond NATIVE_BYTES, or that come to more than
    GRAPH_BYTES, go through NumPy a window at a time: the batches, soft-label columns included, are
    exactly those of the native path."""
    from kdcli.data import batching

    data = kdcli.load_data("digits", val_split=0.1)
    train = data.train.take(np.arange(0, len(data.train), 2))  # a split with rows, as a validation carve makes
    soft = kdcli.data.ArrayColumn(np.random.default_rng(0).normal(size=(len(train), 10)).astype(np.float16), "t")
    calls = []
    original = batching.Split._native_batches
    monkeypatch.setattr(batching.Split, "_native_batches", lambda *a, **k: calls.append(1) or original(*a, **k))

    def epochs():
        return [[[t.numpy() for t in batch] for batch in train.batches(32, shuffle_seed=seed, extra=(soft,))]
                for seed in ((3, 1), None)]

    native = epochs()
    monkeypatch.setattr(batching, "NATIVE_BYTES", 0)
    monkeypatch.setattr(batching, "GRAPH_BYTES", 0)
    # windows of 86 samples, several per epoch, over blocks small enough that a window would reorder them
    monkeypatch.setattr(batching, "WINDOW_BYTES", 86 * (64 + 10) * 4)
    monkeypatch.setattr(batching, "BLOCK_ROWS", 16)
    windowed = epochs()
    assert calls == [1, 1]  # the first epochs went native, the others did not
    for native_epoch, windowed_epoch in zip(native, windowed):
        assert [len(b[0]) for b in windowed_epoch] == [len(b[0]) for b in native_epoch]
        for a, b in zip(native_epoch, windowed_epoch):
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y)
