"""shrink: a convolutional teacher to a sixteenth that still trains, functional models with residual adds, the
one-line refusal of a layer it does not know, the teacher recorded in soft labels; and the layers real models
contain: merges, squeeze-and-excite, normalisation, sequence layers, preprocessing and augmentation, nested models."""

import numpy as np
import pytest

import kdcli
from kdcli._tf import keras
from kdcli.models import shrink

from conftest import assert_one_line_error, run_cli


def widths(model):
    """Each layer's output width (the last axis), by layer name."""
    return {layer.name: layer.output.shape[-1] for layer in model.layers}


def test_shrink_a_convolutional_teacher_to_a_sixteenth(tmp_path):
    data = kdcli.load_data("digits")
    teacher = kdcli.build_model("cnn", data)
    student = shrink(teacher, 0.25)
    ratio = teacher.count_params() / student.count_params()
    assert 12 < ratio < 20, ratio
    convs = [layer.filters for layer in student.layers if hasattr(layer, "filters")]
    assert convs == [8, 8, 16, 16]
    assert student.layers[-1].units == 10
    # normalisation statistics are the teacher's
    np.testing.assert_array_equal(
        student.get_layer("normalization").get_weights()[0], teacher.get_layer("normalization").get_weights()[0]
    )
    history = kdcli.train(student, data, epochs=3, learning_rate=3e-3, lr_schedule="constant")
    assert history["loss"][-1] < history["loss"][0]
    from kdcli.inference import accuracy

    assert accuracy(student, data.test) > 0.8


def test_shrink_functional_model_with_residual_add_and_batchnorm():
    import keras

    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.BatchNormalization()(keras.layers.Conv2D(16, 3, padding="same")(x))
    z = keras.layers.Add()([x, y])
    z = keras.layers.SeparableConv2D(32, 3)(z)
    z = keras.layers.DepthwiseConv2D(3)(z)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(keras.layers.Dropout(0.1)(z)))
    student = shrink(keras.Model(inputs, outputs), 0.5)
    assert [layer.filters for layer in student.layers if hasattr(layer, "filters")] == [8, 8, 16]
    assert student.output_shape == (None, 5)


def test_shrink_refuses_an_unknown_layer(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8)), keras.layers.TimeDistributed(keras.layers.Dense(4), name="td"),
                              keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "td.keras")
    r = run_cli("distill", "--teacher", tmp_path / "td.keras", "--data", "digits", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "shrink does not know layer 'td' (TimeDistributed); give a student architecture with --student")
    assert not (tmp_path / "s.keras").exists()
    r = run_cli("distill", "--teacher", tmp_path / "td.keras", "--data", "digits", "--student", "mlp",
                "--epochs", "1", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr  # the teacher itself is fine


def test_shrink_from_soft_labels_uses_the_recorded_teacher(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "shrink:0.5", "--epochs", "1", "--out", out)
    assert r.exit_code == 0, r.stderr
    teacher = kdcli.load_model(pipeline["teacher"])
    assert [layer.units for layer in kdcli.load_model(out).layers if hasattr(layer, "units")] == [
        layer.units // 2 for layer in teacher.layers[:-1] if hasattr(layer, "units")] + [10]


def test_widths_joined_by_a_merge_are_scaled_as_one():
    # NASNet's case: Conv(44) -> 11 channels, but Concatenate(Conv(22), Conv(22)) -> 6 + 6 = 12
    i = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(44, 1, name="a")(i)
    b = keras.layers.Concatenate(name="b")([keras.layers.Conv2D(22, 1)(i), keras.layers.Conv2D(22, 1)(i)])
    x = keras.layers.Add(name="add")([a, b])
    x = keras.layers.GroupNormalization(groups=4, name="gn")(keras.layers.ReLU()(x))
    teacher = keras.Model(i, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    student = shrink(teacher, 0.25, seed=0)
    w = widths(student)
    assert w["a"] == w["b"] == w["add"] == 12  # the conv takes the width of the concatenation it is added to
    assert 12 % student.get_layer("gn").groups == 0  # GroupNormalization's groups divide the new channels
    assert student.output_shape == (None, 3)


def test_squeeze_and_excite_reshape_and_multiply_follow_the_channels():
    i = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(40, 3, padding="same", name="expand")(i)
    se = keras.layers.GlobalAveragePooling2D()(x)
    se = keras.layers.Reshape((1, 1, 40), name="se_reshape")(se)
    se = keras.layers.Conv2D(10, 1, activation="relu")(se)
    se = keras.layers.Conv2D(40, 1, activation="sigmoid", name="se_expand")(se)
    x = keras.layers.Multiply(name="excite")([x, se])
    x = keras.layers.BatchNormalization(name="bn")(x)
    teacher = keras.Model(i, keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(x)))
    student = shrink(teacher, 0.25, seed=0)
    w = widths(student)
    assert w["expand"] == w["se_reshape"] == w["se_expand"] == w["excite"] == w["bn"] == 10
    assert student.get_layer("se_reshape").target_shape == (1, 1, 10)
    assert student.output_shape == (None, 4) and student.layers[-1].get_config()["activation"] == "softmax"


def test_sequence_layers_are_scaled():
    i = keras.Input((20,))
    x = keras.layers.Embedding(100, 32, name="embedding")(i)
    x = keras.layers.Conv1D(24, 3, name="conv1d")(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(16, return_sequences=True), name="bilstm")(x)
    x = keras.layers.GRU(12, return_sequences=True, name="gru")(x)
    x = keras.layers.SimpleRNN(8, return_sequences=True, name="rnn")(x)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16, name="attention")(x, x)
    x = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Permute((2, 1), name="permute")(x)
    teacher = keras.Model(i, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling1D()(x)))
    student = shrink(teacher, 0.25, seed=0)
    w = widths(student)
    assert (w["embedding"], w["conv1d"], w["bilstm"], w["gru"], w["rnn"]) == (8, 6, 8, 3, 2)  # bilstm: 2 x 4
    attention = student.get_layer("attention")
    assert attention.get_config()["key_dim"] == 4 and attention.get_config()["num_heads"] == 2
    assert w["ln"] == 2 and student.get_layer("permute").output.shape == (None, 2, 18)
    assert student.count_params() < teacher.count_params() / 5  # the vocabulary stays: 100 rows
    assert student(np.ones((2, 20))).shape == (2, 3)  # its weights were built for the new widths


def test_preprocessing_and_augmentation_layers_are_copied_with_their_state():
    data = kdcli.load_data("digits")
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(data.x_train.reshape(-1, 8, 8, 1).astype("float32"))
    augment = [keras.layers.RandomFlip("horizontal", seed=1), keras.layers.RandomRotation(0.1, seed=2),
               keras.layers.RandomZoom(0.1), keras.layers.RandomTranslation(0.1, 0.1), keras.layers.RandomContrast(0.1)]
    teacher = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Reshape((8, 8, 1)), keras.layers.Resizing(12, 12),
        keras.layers.CenterCrop(10, 10), keras.layers.Rescaling(1 / 16), norm, *augment,
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.Flatten(), keras.layers.Dense(10),
    ])
    student = shrink(teacher, 0.25, seed=0)
    assert isinstance(student, keras.Sequential)
    for t, s in zip(teacher.layers, student.layers):
        assert type(t) is type(s)
        if t.__module__.startswith("keras.src.layers.preprocessing"):
            assert s.get_config() == t.get_config()
    np.testing.assert_array_equal(student.get_layer("norm").mean, teacher.get_layer("norm").mean)
    assert student.layers[-3].filters == 4


def test_nested_models_are_shrunk_recursively():
    # ConvNeXt's stem is a Sequential inside the model
    stem = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(32, 2, strides=2),
                             keras.layers.LayerNormalization()], name="stem")
    i = keras.Input((8, 8, 1))
    x = stem(i)
    x = x + keras.layers.Conv2D(32, 1)(x)  # an operation on tensors, as in ConvNeXt's blocks
    teacher = keras.Model(i, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(x)))
    student = shrink(teacher, 0.25, seed=0)
    nested = student.get_layer("stem")
    assert isinstance(nested, keras.Sequential) and nested.layers[0].filters == 8
    assert student.output_shape == (None, 10)


def test_a_subclassed_nested_model_is_refused_with_one_line(tmp_path):
    class Block(keras.Model):
        def call(self, x):
            return x

    i = keras.Input((8, 8))
    teacher = keras.Model(i, keras.layers.Dense(10)(keras.layers.Flatten()(Block()(i))))
    with pytest.raises(kdcli.KdcliError, match="shrink works on Sequential and Functional models, not a subclassed"):
        shrink(teacher, 0.25)


@pytest.mark.slow
def test_augmentation_teacher_through_one_shot_distill_and_evaluate(tmp_path):
    """The Keras tutorial's image classifier: augmentation layers inside the model."""
    data = kdcli.load_data("digits")
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([
        keras.Input((8, 8)), keras.layers.Reshape((8, 8, 1)), keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(0.05), keras.layers.Rescaling(1 / 16),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10),
    ])
    teacher.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(data.x_train.astype("float32"), data.y_train, epochs=5, verbose=0)
    teacher.save(tmp_path / "augmented.keras")
    r = run_cli("distill", "--teacher", tmp_path / "augmented.keras", "--data", "digits", "--epochs", "3", "--quiet")
    assert r.exit_code == 0, r.stderr
    student = keras.saving.load_model(tmp_path / "augmented.student.keras")  # safe mode
    assert [type(layer).__name__ for layer in student.layers][:3] == ["Reshape", "RandomFlip", "RandomRotation"]
    r = run_cli("evaluate", tmp_path / "augmented.keras", tmp_path / "augmented.student.keras", "--data", "digits",
                "--latency-runs", "10", "--json", "-")
    assert r.exit_code == 0, r.stderr
