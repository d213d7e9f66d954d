"""Teacher kinds: what kdcli does with each kind of model a Keras user has.

For each kind of teacher (plain Keras heads, augmentation layers, a BiLSTM,
TextVectorization, legacy .h5, SavedModel folders, a custom layer, KerasHub
tasks and a backbone), the script builds it in a temporary folder, offline
(KerasHub models from their constructors, no presets), trains it a few
epochs with Keras' `fit`, saves it in its format, then runs whole kdcli
commands in subprocesses, as a user would:

1. `kdcli distill --teacher T --data D --out S.keras --max-epochs 60` (the one-shot defaults otherwise:
   `--student shrink:0.25`, `--epochs auto`);
2. `kdcli evaluate T S.keras --data D --json - --latency-runs 10`: the teacher's and the student's accuracy
   and parameters; for a KerasHub task also the task's own `predict` accuracy on kdcli's test split;
3. `kdcli export S.keras --format tflite --quantize int8 --data D --out S-int8.tflite`, then
   `kdcli evaluate S.keras S-int8.tflite ...`: the int8 file's accuracy and its agreement with the .keras.

A command that fails is recorded by its one-line message (the last `error:` line
of stderr, else its last line). One run, seed 0. Takes about 15 minutes on 2 CPU cores. The kinds
are a one-axis grid.py `Grid`: each kind goes to `--json` (under "kinds", beside the minutes they
took) as soon as it is measured, and kinds already there (all but those whose teacher could not be
built) are kept, not rerun, so a run cut short resumes. Prints, and writes to `--markdown`, the
Markdown table of the kinds asked for; `--render` measures nothing and only writes it from `--json`.

    python benchmarks/teacher_kinds.py [--kinds softmax_mlp hub_bert ...] [--workdir DIR] [--json teacher_kinds.json]
        [--markdown teacher_kinds.md] [--render]
"""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import grid
import keras
import keras_hub
import numpy as np
import tensorflow as tf

import kdcli

HERE = Path(__file__).resolve().parent

MAX_EPOCHS = 60
TIMEOUT = 900  # seconds per kdcli command
WORDS = ["good", "bad", "plot", "the", "a", "movie", "film", "is", "was", "very", "and", "but", "fun", "dull"]
VOCABULARY = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
CUSTOM_LAYER = '''import keras


@keras.saving.register_keras_serializable(package="benchmark")
class ChannelScale(keras.layers.Layer):
    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale
'''


# ---- data: each maker writes an .npz into `d` (or names a bundled sample) and returns the --data value

def parity(d):
    """The digits, labelled even (0) or odd (1)."""
    s = kdcli.load_data("digits")
    np.savez(d / "parity.npz", x_train=s.x_train, y_train=s.y_train % 2, x_test=s.x_test, y_test=s.y_test % 2)
    return d / "parity.npz"


def token_ids(d):
    """1,500 int32 sequences of 20 ids in 4..49; class c puts id c+1 at 3 random places."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 1500)
    x = rng.integers(4, 50, size=(1500, 20)).astype("int32")
    for row, label in zip(x, y):
        row[rng.choice(20, 3, replace=False)] = label + 1
    np.savez(d / "ids.npz", x=x, y=y)
    return d / "ids.npz"


def images(d):
    """600 uint8 16x16x3 images whose class is their brightest channel."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = rng.integers(0, 120, size=(600, 16, 16, 3)).astype("uint8")
    x[np.arange(600), :, :, y] += 120
    np.savez(d / "images.npz", x=x, y=y)
    return d / "images.npz"


def strings(d):
    """400 strings of 5 filler words and a class word (good, bad, plot) said twice, shuffled."""
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(400):
        words = [*rng.choice(WORDS[3:], size=5), *[WORDS[i % 3]] * 2]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(i % 3)
    np.savez(d / "strings.npz", x=np.array(texts), y=np.array(labels))
    return d / "strings.npz"


# ---- teachers: each builder takes (folder, --data value), trains and saves a teacher, returns its path

LOGITS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def fit(model, data, epochs, loss="sparse_categorical_crossentropy", learning_rate=1e-3):
    s = kdcli.load_data(str(data))
    model.compile(keras.optimizers.Adam(learning_rate), loss)
    model.fit(s.x_train, s.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def mlp(data, extra=(), sigmoid=False):
    """A digits MLP (`extra` layers after Flatten) with a softmax head, or one sigmoid unit."""
    keras.utils.set_random_seed(0)
    head = keras.layers.Dense(1, "sigmoid") if sigmoid else keras.layers.Dense(10, "softmax")
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Rescaling(1 / 16), keras.layers.Flatten(), *extra,
                              keras.layers.Dense(64, activation="relu"), head])
    return fit(model, data, 20, "binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy")


def cnn(data, augment=()):
    """A digits CNN with a logits head, `augment` layers first."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Reshape((8, 8, 1)), *augment,
                              keras.layers.Rescaling(1 / 16), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.Conv2D(32, 3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    return fit(model, data, 15, LOGITS)


def saved(model, path):
    """`model` saved to `path`: `.keras` or `.h5` by `save`, a SavedModel folder (no suffix) by `export`."""
    model.save(path) if path.suffix else model.export(str(path), verbose=False)
    return path


def softmax_mlp(d, data):
    return saved(mlp(data), d / "mlp.keras")


def binary_mlp(d, data):
    return saved(mlp(data, sigmoid=True), d / "binary.keras")


def logits_cnn(d, data):
    return saved(cnn(data), d / "cnn.keras")


def augmenting_cnn(d, data):
    augment = [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.05), keras.layers.RandomZoom(0.1),
               keras.layers.RandomContrast(0.2)]
    return saved(cnn(data, augment), d / "augment.keras")


def bilstm(d, data):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20,), dtype="int32"), keras.layers.Embedding(50, 16),
                              keras.layers.Bidirectional(keras.layers.LSTM(16)), keras.layers.Dense(3, "softmax")])
    return saved(fit(model, data, 8), d / "bilstm.keras")


def text_vectorization(d, data):
    s = kdcli.load_data(data)
    vectorize = keras.layers.TextVectorization(max_tokens=2000, output_sequence_length=40)
    vectorize.adapt(tf.constant(s.x_train.astype(str)))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,), dtype="string")
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(2000, 16)(vectorize(inputs)))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(tf.constant(s.x_train.astype(str)), s.y_train, epochs=8, batch_size=32, verbose=0)
    return saved(model, d / "texts.keras")


def legacy_h5(d, data):
    return saved(mlp(data), d / "mlp.h5")


def kdcli_saved_model(d, data):
    r = run("export", saved(mlp(data), d / "mlp.keras"), "--format", "saved_model", "--out", d / "kdcli_saved")
    if not r["ok"]:
        raise RuntimeError(f"kdcli export --format saved_model: {r['message']}")
    return d / "kdcli_saved"


def foreign_saved_model(d, data):
    return saved(mlp(data), d / "foreign_saved")


def custom_layer(d, data):
    """An MLP with a `ChannelScale` layer registered in channel_layers.py, which kdcli gets by --import."""
    (d / "channel_layers.py").write_text(CUSTOM_LAYER)
    spec = importlib.util.spec_from_file_location("channel_layers", d / "channel_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return saved(mlp(data, extra=[module.ChannelScale()]), d / "custom.keras")


def hub_resnet(d, data):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 32],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        use_pre_activation=False, image_shape=(16, 16, 3))
    converter = keras_hub.layers.ResNetImageConverter(image_size=(16, 16), scale=1 / 255)
    task = keras_hub.models.ResNetImageClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(image_converter=converter))
    return saved(fit(task, data, 3, LOGITS), d / "resnet.keras")


def hub_bert(d, data):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32, max_sequence_length=12)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=VOCABULARY, lowercase=True)
    task = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=3,
        preprocessor=keras_hub.models.BertTextClassifierPreprocessor(tokenizer=tokenizer, sequence_length=12))
    return saved(fit(task, data, 10, LOGITS, learning_rate=3e-3), d / "bert.keras")


def hub_backbone(d, data):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=20)
    ids = keras.Input((20,), dtype="int32", name="token_ids")
    features = backbone({"token_ids": ids, "segment_ids": keras.ops.zeros_like(ids),
                         "padding_mask": keras.ops.not_equal(ids, 0)})
    model = keras.Model(ids, keras.layers.Dense(3)(features["pooled_output"]))
    return saved(fit(model, data, 10, LOGITS, learning_rate=3e-3), d / "backbone.keras")


# kind -> (format, data: a bundled sample's name or a maker, the teacher's builder)
KINDS = {
    "Keras softmax MLP": (".keras", "digits", softmax_mlp),
    "Keras binary sigmoid head (even/odd)": (".keras", parity, binary_mlp),
    "Keras logits CNN": (".keras", "digits", logits_cnn),
    "CNN with RandomFlip/Rotation/Zoom/Contrast": (".keras", "digits", augmenting_cnn),
    "Embedding + Bidirectional(LSTM), int32 ids": (".keras", token_ids, bilstm),
    "TextVectorization over strings": (".keras", "texts", text_vectorization),
    "legacy .h5 MLP": (".h5", "digits", legacy_h5),
    "kdcli's own SavedModel export of the MLP": ("SavedModel folder", "digits", kdcli_saved_model),
    "foreign SavedModel (Keras `model.export`, softmax)": ("SavedModel folder", "digits", foreign_saved_model),
    "custom registered layer, `--import channel_layers.py`": (".keras", "digits", custom_layer),
    "KerasHub ResNetImageClassifier + preprocessor (scale 1/255)": (".keras, KerasHub task", images, hub_resnet),
    "KerasHub BertTextClassifier + preprocessor, strings": (".keras, KerasHub task", strings, hub_bert),
    "KerasHub BertBackbone in a functional model, int32 ids": (".keras", token_ids, hub_backbone),
}


def run(*args, imports=()):
    """Run one whole kdcli command in a subprocess: ok, exit code, seconds, stdout, stderr, one-line message."""
    command = [sys.executable, "-m", "kdcli", *map(str, args), *[a for m in imports for a in ("--import", str(m))]]
    started = time.perf_counter()
    try:
        r = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"ok": False, "code": None, "seconds": TIMEOUT, "message": f"timed out after {TIMEOUT} s"}
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    message = (errors or lines or [f"exit {r.returncode}, nothing on stderr"])[-1].strip()
    return {"ok": r.returncode == 0, "code": r.returncode, "seconds": round(time.perf_counter() - started, 1),
            "stdout": r.stdout, "stderr": lines[-40:], "traceback": "Traceback" in r.stderr,
            "message": None if r.returncode == 0 else message}


def evaluated(r, index):
    """The entry of model `index` in a successful `evaluate --json -`."""
    return json.loads(r["stdout"])["models"][index] if r["ok"] else None


def measure(kind, d):
    """One row: build and train the teacher, then distill, evaluate and export through kdcli."""
    fmt, make_data, build = KINDS[kind]
    d.mkdir(parents=True, exist_ok=True)
    data = make_data if isinstance(make_data, str) else make_data(d)
    imports = [d / "channel_layers.py"] if build is custom_layer else []
    record = {"format": fmt, "data": str(data)}
    started = time.perf_counter()
    try:
        teacher = build(d, data)
    except Exception as error:  # a teacher the script could not build: the row says why
        record["teacher_error"] = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        return record
    record["teacher_build_seconds"] = round(time.perf_counter() - started, 1)
    if "KerasHub task" in fmt:  # the task's own predict, which runs its preprocessor
        s, task = kdcli.load_data(str(data)), keras.saving.load_model(teacher, compile=False)
        record["task_predict_accuracy"] = float(np.mean(task.predict(s.x_test, verbose=0).argmax(1) == s.y_test))
    student, int8 = d / "student.keras", d / "student-int8.tflite"
    common = ["--data", data, "--json", "-", "--latency-runs", 10]
    record["distill"] = run("distill", "--teacher", teacher, "--data", data, "--max-epochs", MAX_EPOCHS,
                            "--out", student, imports=imports)
    models = [teacher, student] if record["distill"]["ok"] else [teacher]
    record["evaluate"] = run("evaluate", *models, *common, imports=imports)
    record["teacher"] = evaluated(record["evaluate"], 0)
    if record["distill"]["ok"]:
        record["student"] = evaluated(record["evaluate"], 1)
        record["student_provenance_metrics"] = kdcli.read_provenance(student)["metrics"]
        record["export"] = run("export", student, "--format", "tflite", "--quantize", "int8", "--data", data,
                               "--out", int8, imports=imports)
        if record["export"]["ok"]:
            record["evaluate_int8"] = run("evaluate", student, int8, *common, imports=imports)
            record["int8"] = evaluated(record["evaluate_int8"], 1)
    record["seconds"] = round(time.perf_counter() - started, 1)
    return record


def cell(record, key, command, show):
    """A table cell: `show(entry)` of a measured model, or the message of the command that failed."""
    if record.get(key):
        return show(record[key])
    failed = record.get(command)
    return "—" if failed is None else "`" + failed["message"].replace("|", "\\|").replace("`", "'") + "`"


def row(kind, record):
    if "teacher_error" in record:
        return f"| {kind} | {record['format']} | building the teacher failed: {record['teacher_error']} | | |"
    teacher = cell(record, "teacher", "evaluate", lambda e: f"{100 * e['accuracy']:.1f}%")
    if "task_predict_accuracy" in record:
        teacher += f" (task predict {100 * record['task_predict_accuracy']:.1f}%)"
    params = f" ({record['teacher']['params']:,})" if record.get("teacher") and record["teacher"]["params"] else ""
    student = cell(record, "student", "distill" if not record["distill"]["ok"] else "evaluate",
                   lambda e: f"{100 * e['accuracy']:.1f}%, {e['params']:,}" + params)
    int8 = cell(record, "int8", "export" if not record.get("export", {}).get("ok") else "evaluate_int8",
                lambda e: f"{100 * e['accuracy']:.1f}%, {100 * e['agreement']:.1f}%")
    return f"| {kind} | {record['format']} | {teacher} | {student} | {int8} |"


def markdown(results, minutes):
    return [
        "## Teacher kinds: distill, evaluate and int8 export of every kind of model\n\n"
        f"Teacher kinds through kdcli: one run, one seed (0), {minutes:.0f} minutes of measuring on 2 CPU cores. "
        "Each teacher was trained with Keras `fit` for 3 to 20 epochs and saved in its format; `kdcli distill "
        "--teacher T` ran with the one-shot defaults (`--student shrink:0.25`, `--epochs auto`, patience 20), "
        f"bounded by `--max-epochs {MAX_EPOCHS}`; `kdcli evaluate` with `--latency-runs 10`. Accuracies are on "
        "kdcli's test split; the int8 agreement is with the student's `.keras`. A failed command shows its message.",
        "",
        "| kind | format | teacher accuracy (kdcli; task predict for hub) | distilled student accuracy, params "
        "(teacher params) | int8 export accuracy, agreement |",
        "| --- | --- | --- | --- | --- |",
        *(row(kind, record) for kind, record in results.items()),
    ]


BUILDERS = {build.__name__: kind for kind, (_, _, build) in KINDS.items()}  # builder's name -> kind


def minutes(records):
    """The minutes that measuring `records` took."""
    return sum(record.get("seconds", 0) for record in records) / 60


class Kinds(grid.Grid):
    """One cell per kind (by its builder's name), kept under "kinds" by its label, beside "minutes": all
    the stored kinds' time; a kind whose teacher could not be built is measured again."""

    def __init__(self, path, names, workdir=None):
        super().__init__(path, names, key=lambda name, variant, seed: ("kinds", BUILDERS[name]),
                         redo=lambda record: "teacher_error" in record, workdir=workdir)

    def save(self):
        self.results["minutes"] = round(minutes(self.results.get("kinds", {}).values()), 1)
        super().save()


def main():
    parser = grid.parser(__doc__.splitlines()[0], list(BUILDERS), json_default=HERE / "teacher_kinds.json",
                         keeps="the teachers, data and students", seeds=None, sets_name="kinds")
    args = parser.parse_args()
    cells = Kinds(args.json, args.kinds, workdir=args.workdir)

    def cell(name, variant, seed):
        record = measure(BUILDERS[name], cells.folder(name))
        done = record.get("teacher_error") or f"measured in {record.get('seconds', 0):.0f} s"
        print(f"{BUILDERS[name]}: {done}", flush=True)
        return record

    if not args.render:
        cells.run(cell)
    results = {BUILDERS[name]: cells.cell(name, None, None) for name in args.kinds if cells.cell(name, None, None)}
    grid.write_section(markdown(results, minutes(results.values())), args.markdown)


if __name__ == "__main__":
    main()
