"""Text data: text folders, string arrays in .npz and .h5, the bundled `texts` sample, token ids,
string batches, fingerprints, and bad text refused with one line."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import kdcli
from kdcli.data import ArrayColumn, TextColumn, iterate, sample_order, write_text_folder
from kdcli.errors import KdcliError

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("goal match team", "stock price bank", "cell gene lab")


def make_texts(n, classes=3, seed=0):
    """`n` distinct short texts (some not ASCII, one with a newline) and labels cycling over `classes`."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = [f"{WORDS[c % len(WORDS)]} number {i} {' '.join(rng.choice(['café', 'naïve', 'ok', '☕'], 3))}"
         for i, c in enumerate(y)]
    x[1] += "\nsecond line"
    return np.array(x), y


def text_folder(root, n=30, classes=3, split=False):
    """Write a small text folder under `root` (with `train/` and `test/` when `split`); returns its path,
    texts and labels (for `split`: `(x, y, x_test, y_test)`)."""
    x, y = make_texts(n, classes)
    names = ["ant", "bee", "cat"][:classes]
    if not split:
        return write_text_folder(root, x, y, names), x, y
    x_test, y_test = make_texts(n // 3, classes, seed=1)
    x_test = np.array([f"test {t}" for t in x_test])
    return write_text_folder(root, x, y, names, test=(x_test, y_test)), x, y, x_test, y_test


def by_label(x, y):
    """Texts grouped by label, each group sorted: the same for any order of the samples."""
    return {int(c): sorted(str(t) for t, label in zip(x, y) if label == c) for c in np.unique(y)}


def batches_of(split, batch_size, seed=None, extra=()):
    out = [tuple(t.numpy() for t in b) for b in iterate(split.batches(batch_size, shuffle_seed=seed, extra=extra))]
    return [np.concatenate(parts) for parts in zip(*out)]


def one_line_error(call, contains):
    """`call()` raises a one-line KdcliError (exit code 4) holding `contains`."""
    with pytest.raises(KdcliError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and contains in message, message
    assert info.value.exit_code == 4
    return message


# --- text folders ---------------------------------------------------------------


def test_text_folder_is_split_stratified_and_read_lazily(tmp_path):
    folder, x, y = text_folder(tmp_path / "texts")
    (folder / "ant" / "notes.md").write_text("not a sample")  # only .txt files are samples
    data = kdcli.load_data(folder)
    assert isinstance(data.train.x, TextColumn)
    assert (data.input_shape, data.input_kind, data.num_classes) == ((), "text", 3)
    assert data.class_names == ["ant", "bee", "cat"]
    assert (len(data.train), len(data.test)) == (24, 6) and np.bincount(data.y_test).tolist() == [2, 2, 2]
    assert data.x_train.dtype == object and all(type(t) is str for t in data.x_train)
    both = (np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test]))
    assert by_label(*both) == by_label(x, y)  # every text read back exactly, with its label
    assert data.describe()["input_kind"] == "text" and data.describe()["input_shape"] == []
    # inputs are read when asked for, not at load time
    first = data.train.x.files[0]
    first.write_text("edited after loading", encoding="utf-8")
    assert data.train.read(np.arange(1))[0] == "edited after loading"


def test_text_folder_with_train_and_test_folders(tmp_path):
    folder, x, y, x_test, y_test = text_folder(tmp_path / "texts", split=True)
    data = kdcli.load_data(folder)
    assert (len(data.train), len(data.test)) == (30, 10)
    order = np.argsort(y_test, kind="stable")  # files are listed class by class, in file-name order
    np.testing.assert_array_equal(data.y_test, y_test[order])
    assert data.x_test.tolist() == x_test[order].tolist()
    assert by_label(data.x_train, data.y_train) == by_label(x, y)


def test_text_files_that_are_not_utf8_are_read_with_replacements(tmp_path):
    folder, _, _ = text_folder(tmp_path / "texts", n=6)
    (folder / "bee" / "9999.txt").write_bytes(b"caf\xe9 latin-1")
    data = kdcli.load_data(folder, val_split=0.5)
    texts = np.concatenate([data.x_train, data.x_test]).tolist()
    assert "caf\ufffd latin-1" in texts


def test_text_folder_fingerprint_is_stable_and_follows_the_files(tmp_path):
    folder, _, _, _, _ = text_folder(tmp_path / "texts", split=True)
    before = kdcli.load_data(folder).fingerprint
    assert kdcli.load_data(folder).fingerprint == before
    (folder / "test" / "ant" / "0000.txt").write_text("a test file changed", encoding="utf-8")
    assert kdcli.load_data(folder).fingerprint == before  # the fingerprint identifies the training split
    target = sorted((folder / "train" / "bee").iterdir())[0]
    target.write_bytes(target.read_bytes() + b"!")  # edit a file
    edited = kdcli.load_data(folder).fingerprint
    assert edited != before
    (folder / "train" / "bee" / "extra.txt").write_text("one more", encoding="utf-8")  # add a file
    assert kdcli.load_data(folder).fingerprint not in (before, edited)


def test_images_beside_txt_files_keep_a_folder_an_image_folder(tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (4, 5), color=50 * i).save(tmp_path / "imgs" / label / f"{i}.png")
        (tmp_path / "imgs" / label / "README.txt").write_text("about these images")
    data = kdcli.load_data(tmp_path / "imgs", val_split=0.34)
    assert data.input_shape == (5, 4, 1) and data.input_kind == "numeric" and len(data.train) + len(data.test) == 6


# --- string arrays in .npz and .h5 -------------------------------------------------


def test_string_arrays_in_npz_and_h5_are_text_with_one_fingerprint(tmp_path):
    x, y = make_texts(40)
    forms = {}
    np.savez(tmp_path / "u.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    forms["npz U"] = tmp_path / "u.npz"
    encoded = np.array([t.encode("utf-8") for t in x])  # fixed-width bytes, 'S'
    np.savez(tmp_path / "s.npz", x_train=encoded[:30], y_train=y[:30], x_test=encoded[30:], y_test=y[30:])
    forms["npz S"] = tmp_path / "s.npz"
    with h5py.File(tmp_path / "vlen.h5", "w") as f:
        f.create_dataset("x_train", data=x[:30].astype(object), dtype=h5py.string_dtype())
        f.create_dataset("x_test", data=x[30:].astype(object), dtype=h5py.string_dtype())
        f["y_train"], f["y_test"] = y[:30], y[30:]
    forms["h5 variable-length"] = tmp_path / "vlen.h5"
    with h5py.File(tmp_path / "fixed.h5", "w") as f:
        f["x_train"], f["x_test"], f["y_train"], f["y_test"] = encoded[:30], encoded[30:], y[:30], y[30:]
    forms["h5 fixed"] = tmp_path / "fixed.h5"
    fingerprints = set()
    for form, path in forms.items():
        data = kdcli.load_data(path)
        assert (data.input_shape, data.input_kind, len(data.train), len(data.test)) == ((), "text", 30, 10), form
        assert data.x_test.dtype == object and data.x_test.tolist() == x[30:].tolist(), form
        texts, labels = batches_of(data.train, 8)
        assert [t.decode("utf-8") for t in texts] == x[:30].tolist() and labels.tolist() == y[:30].tolist(), form
        fingerprints.add(data.fingerprint)
    assert len(fingerprints) == 1  # the same texts, whatever the file and dtype


def test_npz_of_x_y_strings_is_split_stratified(tmp_path):
    x, y = make_texts(60)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = kdcli.load_data(tmp_path / "d.npz", val_split=0.25)
    assert (len(data.train), len(data.test), data.input_kind) == (45, 15, "text")
    assert np.bincount(data.y_test).tolist() == [5, 5, 5]
    both = (np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test]))
    assert by_label(*both) == by_label(x, y)
    assert data.train.read(np.arange(2)).tolist() == data.x_train[:2].tolist()  # no NaN check trips on strings


# --- batches ---------------------------------------------------------------------


@pytest.mark.parametrize("form", ["npz", "folder", "h5"])
def test_text_batches_are_strings_in_a_reproducible_shuffled_order(tmp_path, form):
    """Every path of `Split.batches` (in memory, files, windows of an .h5) gives tf.string
    batches of the right texts, aligned with their labels and with extra columns."""
    from kdcli._tf import tf

    x, y = make_texts(60)
    if form == "npz":
        np.savez(tmp_path / "d.npz", x=x, y=y)
        data = kdcli.load_data(tmp_path / "d.npz")
    elif form == "folder":
        data = kdcli.load_data(write_text_folder(tmp_path / "texts", x, y))
    else:
        with h5py.File(tmp_path / "d.h5", "w") as f:
            f.create_dataset("x", data=x.astype(object), dtype=h5py.string_dtype())
            f["y"] = y
        data = kdcli.load_data(tmp_path / "d.h5")
    split = data.train
    spec = split.batches(8).element_spec
    assert spec[0] == tf.TensorSpec((None,), tf.string) and spec[1] == tf.TensorSpec((None,), tf.int64)
    label_of = {t: int(label) for t, label in zip(x, y)}
    # an extra column (soft labels) holding each sample's position in the split
    soft = ArrayColumn(np.stack([np.arange(len(split)), -np.arange(len(split))], 1).astype(np.float64), "soft")
    texts, labels, extras = batches_of(split, 8, seed=(3, 1), extra=(soft,))
    texts = [t.decode("utf-8") for t in texts]
    assert extras.dtype == np.float32 and labels.dtype == np.int64
    assert sorted(texts) == sorted(split.arrays()[0].tolist())  # every training text once
    assert labels.tolist() == [label_of[t] for t in texts]
    positions = extras[:, 0].astype(int)
    assert [split.arrays()[0][p] for p in positions] == texts and np.all(extras[:, 1] == -extras[:, 0])
    if form != "h5":  # random access: shuffled sample by sample, in `sample_order`
        np.testing.assert_array_equal(positions, sample_order(len(split), (3, 1)))
    again, _, _ = batches_of(split, 8, seed=(3, 1), extra=(soft,))
    assert [t.decode("utf-8") for t in again] == texts
    other, _, _ = batches_of(split, 8, seed=(4, 1), extra=(soft,))
    assert [t.decode("utf-8") for t in other] != texts
    unshuffled, _ = batches_of(split, 8)
    assert [t.decode("utf-8") for t in unshuffled] == split.arrays()[0].tolist()


# --- the bundled sample ------------------------------------------------------------


def test_texts_sample_loads_like_digits():
    data = kdcli.load_data("texts")
    assert (len(data.train), len(data.test), data.num_classes) == (1600, 400, 4)
    assert (data.input_shape, data.input_kind) == ((), "text")
    assert np.bincount(data.y_train).tolist() == [400] * 4 and np.bincount(data.y_test).tolist() == [100] * 4
    words = [len(t.split()) for t in data.x_train]
    assert min(words) >= 10 and max(words) <= 40
    assert kdcli.load_data("texts").fingerprint == data.fingerprint
    assert data.describe()["spec"] == "texts" and kdcli.data.is_named("texts")


def test_texts_sample_is_package_data_and_what_make_texts_writes(tmp_path):
    """`kdcli/samples/texts.npz` links to `samples/texts.npz` (shipped by the package-data glob), and
    `make_texts.make_corpus` draws the same texts again."""
    import importlib.util

    link = ROOT / "kdcli" / "samples" / "texts.npz"
    assert link.is_symlink() and link.resolve() == (ROOT / "samples" / "texts.npz").resolve()
    assert "samples/*.npz" in (ROOT / "pyproject.toml").read_text()
    assert (ROOT / "samples" / "texts.npz").stat().st_size < 300_000
    spec = importlib.util.spec_from_file_location("make_texts", ROOT / "samples" / "make_texts.py")
    make_texts_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_texts_module)
    x, y = make_texts_module.make_corpus()
    data = kdcli.load_data("texts")
    assert by_label(x, y) == by_label(np.concatenate([data.x_train, data.x_test]),
                                      np.concatenate([data.y_train, data.y_test]))


@pytest.mark.slow
def test_texts_sample_is_hard_but_learnable_for_a_bag_of_words():
    """A bag-of-words logistic regression (NumPy) gets most, not all, of the test split right."""
    data = kdcli.load_data("texts")

    def words(texts):
        return [set(t.lower().rstrip(".").split()) for t in texts]

    train, test = words(data.x_train), words(data.x_test)
    vocab = {w: i for i, w in enumerate(sorted(set().union(*train)))}

    def features(docs):
        f = np.zeros((len(docs), len(vocab)), np.float32)
        for i, doc in enumerate(docs):
            f[i, [vocab[w] for w in doc if w in vocab]] = 1
        return f

    f_train, f_test = features(train), features(test)
    w, one_hot = np.zeros((len(vocab), 4)), np.eye(4)[data.y_train]
    for _ in range(300):
        z = f_train @ w
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        w -= 0.5 * (f_train.T @ (p - one_hot) / len(p) + 0.01 * w)
    accuracy = np.mean(np.argmax(f_test @ w, 1) == data.y_test)
    assert 0.8 < accuracy < 0.97, accuracy


# --- token ids and input kinds -------------------------------------------------------


def test_token_ids_are_numeric_data_of_kind_tokens(tmp_path):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5000, size=(50, 12), dtype=np.int32)
    tokens[:, -3:] = 0  # padding
    y = np.arange(50) % 2
    np.savez(tmp_path / "tokens.npz", x_train=tokens[:40], y_train=y[:40], x_test=tokens[40:], y_test=y[40:])
    data = kdcli.load_data(tmp_path / "tokens.npz")
    assert (data.input_shape, data.input_kind) == ((12,), "tokens")
    assert data.describe()["input_kind"] == "tokens" and data.x_train.dtype == np.int32
    x, labels = batches_of(data.train, 16)
    assert x.dtype == np.float32 and x.shape == (40, 12)  # ids as float32, exact below 2**24
    np.testing.assert_array_equal(x, tokens[:40])
    np.testing.assert_array_equal(labels, y[:40])
    with h5py.File(tmp_path / "tokens.h5", "w") as f:
        f["x"], f["y"] = tokens.astype(np.int64), y
    streamed = kdcli.load_data(tmp_path / "tokens.h5")
    assert (streamed.input_shape, streamed.input_kind) == ((12,), "tokens")
    x, _ = batches_of(streamed.train, 16)
    np.testing.assert_array_equal(x, tokens[streamed.train.rows])


@pytest.mark.parametrize("x, kind", [
    (np.zeros((10, 4), np.float32), "numeric"),  # float features
    (np.zeros((10, 3, 3), np.int64), "numeric"),  # integer images are not token sequences
    (np.zeros((10, 4), bool), "numeric"),
    (np.zeros((10, 4), np.uint16), "tokens"),
    (np.zeros((10, 64), np.uint8), "numeric"),  # bytes: flattened pixels, not token ids
])
def test_input_kinds(tmp_path, x, kind):
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 2)
    assert kdcli.load_data(tmp_path / "d.npz").input_kind == kind
    assert kdcli.load_data("digits").input_kind == "numeric"


# --- bad text, one line ------------------------------------------------------------


def test_text_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True), (empty / "b").mkdir()
    one_line_error(lambda: kdcli.load_data(empty), "no images (.png, .jpg, .jpeg, .bmp, .gif) or .txt files")
    (tmp_path / "none").mkdir()
    one_line_error(lambda: kdcli.load_data(tmp_path / "none"), "at least two classes, found 0")
    folder, _, _ = text_folder(tmp_path / "texts")
    for f in (folder / "cat").iterdir():
        f.rename(f.with_suffix(".md"))
    message = one_line_error(lambda: kdcli.load_data(folder), "a class folder with no .txt files")
    assert str(folder / "cat") in message
    split, *_ = text_folder(tmp_path / "split", split=True)
    for f in (split / "test" / "bee").iterdir():
        f.unlink()
    one_line_error(lambda: kdcli.load_data(split), f"{split / 'test' / 'bee'}: a class folder with no .txt files")


def test_undecodable_strings_are_refused_with_one_line(tmp_path):
    bad = np.array([b"fine", b"caf\xe9"] * 10)
    y = np.arange(20) % 2
    np.savez(tmp_path / "bad.npz", x=bad, y=y)  # in memory: refused at load
    one_line_error(lambda: kdcli.load_data(tmp_path / "bad.npz"), "bad.npz: x holds strings that are not UTF-8 text")
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["x"], f["y"] = bad, y
    data = kdcli.load_data(tmp_path / "bad.h5")  # streamed: refused when read
    one_line_error(lambda: data.fingerprint, f"{tmp_path / 'bad.h5'}: x holds strings that are not UTF-8 text")
    one_line_error(lambda: batches_of(data.test, 4), "x holds strings that are not UTF-8 text")


def test_badly_shaped_or_typed_inputs_are_refused_with_one_line(tmp_path):
    y = np.arange(6) % 2
    np.savez(tmp_path / "2d.npz", x=np.full((6, 2), "word"), y=y)
    one_line_error(lambda: kdcli.load_data(tmp_path / "2d.npz"), "x holds text, one string per sample of shape (N,), got shape (6, 2)")
    np.savez(tmp_path / "flat.npz", x=np.zeros(6), y=y)  # a sample shape () is for text only
    one_line_error(lambda: kdcli.load_data(tmp_path / "flat.npz"), "x must have a sample axis and features, got shape (6,)")
    with h5py.File(tmp_path / "ragged.h5", "w") as f:
        f.create_dataset("x", (6,), dtype=h5py.vlen_dtype(np.int32))
        f["y"] = y
    one_line_error(lambda: kdcli.load_data(tmp_path / "ragged.h5"), "x holds objects that are not strings")


def test_write_text_folder_refuses_names_out_of_order(tmp_path):
    with pytest.raises(ValueError, match="sorted order"):
        write_text_folder(tmp_path / "t", ["a", "b"], [0, 1], ["zebra", "ant"])
    folder = write_text_folder(tmp_path / "t", ["a", "b"], [0, 1])
    assert sorted(p.name for p in folder.iterdir()) == ["class_0", "class_1"]
    assert (folder / "class_1" / "0001.txt").read_bytes() == b"b"
