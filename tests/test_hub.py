"""KerasHub tasks and backbones, built offline from their configs: run with their preprocessor
wherever kdcli runs them, shrunk to the same task class, saved as tasks; through the command line."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import kdcli
from kdcli._tf import keras

from conftest import assert_one_line_error, run_cli, talk

keras_hub = pytest.importorskip("keras_hub")
# the tasks are saved after `fit`; loading them without their optimizer is what these tests want
pytestmark = pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")

SIZE = 16
WORDS = ["good", "bad", "plot", "the", "a", "movie", "film", "is", "was", "very", "and", "but", "fun", "dull"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]


def _fit(task, x, y, epochs, learning_rate):
    task.compile(optimizer=keras.optimizers.Adam(learning_rate),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    task.fit(x, y, epochs=epochs, batch_size=32, verbose=0)


@pytest.fixture(scope="module")
def image_task(tmp_path_factory):
    """A ResNetImageClassifier whose preprocessor scales pixels by 1/255, trained on raw uint8 images
    whose class is their brightest channel."""
    d = tmp_path_factory.mktemp("hub_images")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.integers(0, 120, size=(300, SIZE, SIZE, 3)).astype("uint8")
    x[np.arange(300), :, :, y] += 120
    np.savez(d / "images.npz", x=x, y=y)
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(SIZE, SIZE, 3))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(SIZE, SIZE), scale=1 / 255)
    task = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    data = kdcli.load_data(d / "images.npz")
    _fit(task, data.x_train, data.y_train, 3, 1e-3)
    task.save(d / "resnet.keras")
    return {"dir": d, "model": d / "resnet.keras", "data": d / "images.npz"}


@pytest.fixture(scope="module")
def text_task(tmp_path_factory):
    """A BertTextClassifier with its tokenizer, on strings whose class is a word they repeat."""
    d = tmp_path_factory.mktemp("hub_texts")
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(240):
        words = [*rng.choice(WORDS[3:], size=5), *[WORDS[i % 3]] * 2]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 3)
    np.savez(d / "texts.npz", x=np.array(texts), y=np.array(labels))
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32, max_sequence_length=12)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    task = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=12))
    data = kdcli.load_data(d / "texts.npz")
    _fit(task, data.x_train, data.y_train, 4, 3e-3)
    task.save(d / "bert.keras")
    return {"dir": d, "model": d / "bert.keras", "data": d / "texts.npz"}


def _predict_accuracy(path, data_path):
    """The accuracy that the task's own `predict` (which runs its preprocessor) gives on kdcli's test split."""
    data = kdcli.load_data(data_path)
    task = keras.saving.load_model(path, compile=False)
    return float(np.mean(task.predict(data.x_test, verbose=0).argmax(1) == data.y_test))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["image_task", "text_task"])
def test_a_task_is_evaluated_through_its_preprocessor(fixture, request):
    task = request.getfixturevalue(fixture)
    r = run_cli("evaluate", task["model"], "--data", task["data"], "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    entry = json.loads(r.stdout)["models"][0]
    assert entry["accuracy"] == _predict_accuracy(task["model"], task["data"])
    assert entry["accuracy"] > 0.5  # trained: the preprocessor matters


def test_raw_pixels_without_the_preprocessor_would_differ(image_task):
    """What kdcli would report if it called the task on raw pixels: the check above can fail."""
    data = kdcli.load_data(image_task["data"])
    task = keras.saving.load_model(image_task["model"], compile=False)
    raw = task(data.x_test.astype("float32"), training=False).numpy()
    assert not np.allclose(raw, task.predict(data.x_test, verbose=0), atol=1e-3)


@pytest.mark.slow
def test_soft_labels_of_a_task_are_its_predict_logits(image_task, tmp_path):
    out = tmp_path / "soft.h5"
    r = run_cli("soft-labels", "--teacher", image_task["model"], "--data", image_task["data"], "--out", out)
    assert r.exit_code == 0, r.stderr
    data = kdcli.load_data(image_task["data"])
    task = keras.saving.load_model(image_task["model"], compile=False)
    with h5py.File(out) as f:
        np.testing.assert_allclose(f["logits"][:], task.predict(data.x_train, verbose=0), atol=1e-4)


@pytest.mark.slow
def test_one_shot_distill_of_an_image_task_gives_the_same_task_with_a_smaller_backbone(image_task, tmp_path):
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", image_task["model"], "--data", image_task["data"], "--epochs", "1",
                "--out", out)
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(out, compile=False)
    assert isinstance(student, keras_hub.models.ResNetImageClassifier)
    assert student.preprocessor is not None
    assert student.backbone.get_config()["stackwise_num_filters"] == [64, 8]  # the first stack keeps the stem's 64
    said = next(line for line in talk(r.stderr) if line.startswith("student "))
    for quantize in ("none", "int8"):
        r = run_cli("export", out, "--quantize", quantize, "--data", image_task["data"],
                    "--out", tmp_path / f"student-{quantize}.tflite")
        assert r.exit_code == 0, r.stderr
    r = run_cli("evaluate", out, tmp_path / "student-none.tflite", tmp_path / "student-int8.tflite",
                "--data", image_task["data"], "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    entry, flat, int8 = json.loads(r.stdout)["models"]
    assert entry["accuracy"] == _predict_accuracy(out, image_task["data"])
    assert f"{entry['params']:,} parameters" in said
    assert flat["agreement"] >= 0.99 and int8["agreement"] >= 0.97  # the export runs in inference mode


@pytest.mark.slow
def test_a_text_task_distills_from_strings_to_a_smaller_shallower_task(text_task, tmp_path):
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", text_task["model"], "--data", text_task["data"], "--student", "shrink:0.5",
                "--depth", "1", "--epochs", "2", "--out", out)
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(out, compile=False)
    assert isinstance(student, keras_hub.models.BertTextClassifier)
    config = student.backbone.get_config()
    assert (config["hidden_dim"], config["intermediate_dim"], config["num_layers"], config["num_heads"]) == (8, 16, 1, 2)
    assert student.preprocessor.tokenizer.vocabulary_size() == len(VOCABULARY)
    record = kdcli.read_provenance(out)
    assert record["metrics"]["teacher_test_accuracy"] == _predict_accuracy(text_task["model"], text_task["data"])


@pytest.mark.parametrize("args, contains", [
    (["--depth", "1"], "--depth sets a transformer backbone's num_layers; ResNetBackbone has none"),
    (["--student-output", "sigmoid"], "--student-output sigmoid"),
])
def test_what_a_task_student_cannot_be_is_refused_before_training(image_task, tmp_path, args, contains):
    r = run_cli("distill", "--teacher", image_task["model"], "--data", image_task["data"], *args,
                "--epochs", "1", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, contains)
    assert "epoch" not in r.stderr


def test_depth_with_shrink_of_a_plain_model_is_refused(pipeline, tmp_path):
    r = run_cli("distill", "--teacher", pipeline["teacher"], "--depth", "1", "--epochs", "1",
                "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "--depth with shrink:0.25 sets a KerasHub transformer backbone's layers")


def test_nested_per_stage_widths_are_scaled():
    from kdcli.hub import _scaled

    assert _scaled([[32, 64], [128]], 0.25) == [[8, 16], [32]]
    assert _scaled([64, 32], 0.25, kept={0}) == [64, 8]
    assert _scaled(True, 0.25) is True  # not a width


def test_a_task_without_its_preprocessor_is_refused_in_one_line(tmp_path, text_task):
    task = keras.saving.load_model(text_task["model"], compile=False)
    bare = keras_hub.models.BertTextClassifier(backbone=task.backbone, num_classes=3, preprocessor=None)
    bare.save(tmp_path / "bare.keras")
    r = run_cli("evaluate", tmp_path / "bare.keras", "--data", text_task["data"])
    assert_one_line_error(r, 4, "saved without its preprocessor")


@pytest.mark.slow
def test_a_task_teaches_online_and_in_an_ensemble(text_task, tmp_path):
    accuracy = _predict_accuracy(text_task["model"], text_task["data"])
    out = tmp_path / "online.keras"
    r = run_cli("distill", "--teacher", text_task["model"], "--data", text_task["data"], "--online",
                "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(out)["metrics"]["teacher_test_accuracy"] == accuracy
    soft = tmp_path / "soft.h5"
    r = run_cli("soft-labels", "--teacher", text_task["model"], "--teacher", text_task["model"],
                "--data", text_task["data"], "--out", soft)
    assert r.exit_code == 0, r.stderr
    data = kdcli.load_data(text_task["data"])
    task = keras.saving.load_model(text_task["model"], compile=False)
    with h5py.File(soft) as f:  # the log of the mean of two equal softmaxes: the logits up to a row constant
        logits, expected = f["logits"][:], task.predict(data.x_train, verbose=0)
    np.testing.assert_allclose(logits - logits.mean(1, keepdims=True), expected - expected.mean(1, keepdims=True),
                               atol=1e-4)


@pytest.mark.slow
def test_a_text_task_reads_a_text_folder(text_task, tmp_path):
    from kdcli.data import write_text_folder

    data = kdcli.load_data(text_task["data"])
    write_text_folder(tmp_path / "texts", data.x_train, data.y_train, test=(data.x_test, data.y_test))
    r = run_cli("evaluate", text_task["model"], "--data", tmp_path / "texts", "--json", "-", "--latency-runs", "10")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["models"][0]["accuracy"] == _predict_accuracy(text_task["model"], text_task["data"])


@pytest.mark.slow
def test_a_resnet_backbone_inside_a_functional_model_is_shrunk_by_its_config(image_task, tmp_path):
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(SIZE, SIZE, 3))
    images = keras.Input((SIZE, SIZE, 3))
    features = backbone(keras.layers.Rescaling(1 / 255)(images))
    teacher = keras.Model(images, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(features)))
    teacher.save(tmp_path / "teacher.keras")
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", tmp_path / "teacher.keras", "--data", image_task["data"], "--epochs", "1",
                "--out", out)
    assert r.exit_code == 0, r.stderr
    (shrunk,) = [layer for layer in kdcli.load_model(out).layers if isinstance(layer, keras_hub.models.ResNetBackbone)]
    assert shrunk.get_config()["stackwise_num_filters"] == [64, 8]


@pytest.mark.slow
def test_a_bert_backbone_inside_a_functional_model_is_shrunk_by_its_config(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, 19, size=(200, 12)).astype("int32")
    np.savez(tmp_path / "ids.npz", x=x, y=x[:, 0] % 3)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=12)
    ids = keras.Input((12,), dtype="int32", name="token_ids")
    features = backbone({"token_ids": ids, "segment_ids": keras.ops.zeros_like(ids),
                         "padding_mask": keras.ops.not_equal(ids, 0)})
    teacher = keras.Model(ids, keras.layers.Dense(3)(features["pooled_output"]))
    teacher.save(tmp_path / "teacher.keras")
    out = tmp_path / "student.keras"
    r = run_cli("distill", "--teacher", tmp_path / "teacher.keras", "--data", tmp_path / "ids.npz", "--epochs", "1",
                "--depth", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    student = kdcli.load_model(out)
    (shrunk,) = [layer for layer in student.layers if isinstance(layer, keras_hub.models.BertBackbone)]
    assert (shrunk.get_config()["hidden_dim"], shrunk.get_config()["num_layers"]) == (4, 1)
    assert student.count_params() < teacher.count_params() / 4


@pytest.mark.slow
def test_a_hub_file_without_keras_hub_names_the_extra(text_task):
    """keras_hub made unimportable in a fresh process, as on a machine without the extra."""
    code = ("import sys; sys.modules['keras_hub'] = None; from kdcli.cli import main; "
            f"sys.argv = ['kdcli', 'evaluate', {str(text_task['model'])!r}, '--data', {str(text_task['data'])!r}]; "
            "main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 4, r.stderr
    assert r.stderr.strip().splitlines() == ["error: KerasHub models need keras-hub: pip install 'kdcli[hub]'"]
