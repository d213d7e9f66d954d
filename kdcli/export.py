"""Export: a `.keras` model to TFLite (with post-training quantization) or a SavedModel.

Both go through a TensorFlow SavedModel (`model.export`), the path Keras 3
supports on every version, of an inference twin of the model (`export_twin`):
the same layers and weights, with random augmentation replaced by `Identity`,
token ids taken as int32, and, for TFLite, recurrent layers unrolled. The
TFLite quantizer of a model with recurrent layers runs in a child process, so
that a crash inside it is one error line, not the end of kdcli.

Exports carry provenance like every artifact: a `.tflite` file in a sidecar
`<file>.kdcli.json` (the flatbuffer has no room for it without extra tools),
a SavedModel in `assets.extra/kdcli.json` (a folder TF Serving ignores).

TensorFlow is imported when a model is exported.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from kdcli.data import rebase_data_record
from kdcli.errors import KdcliError, UsageError, first_line
from kdcli.export_records import sidecar
from kdcli.files import (
    atomic_path,
    check_folder,
    check_output,
    nearest_folder,
    provenance,
    relative_to_artifact,
    sha256_file,
)
from kdcli.model_files import load_model, read_model_provenance
from kdcli.specs import FORMATS, MIN_INT8_AGREEMENT, QUANTIZATIONS

REPRESENTATIVE_SAMPLES = 300
# Layers that are identities at inference but draw random numbers in a traced graph (ops that
# TFLite lacks): the export replaces them by `Identity`. Besides these, every `Random*` layer of
# keras.layers.preprocessing but RandomCrop, which crops and resizes at inference too.
_INFERENCE_IDENTITIES = {
    "AugMix", "RandAugment", "CutMix", "MixUp", "Solarization", "Dropout", "SpatialDropout1D", "SpatialDropout2D",
    "SpatialDropout3D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
}
# What the child process of `_convert_in_child` runs.
# kdcli's folder is appended to the child's path (it is there already when kdcli is installed), never
# put ahead of the standard library.
_CHILD_CODE = "import sys; sys.path.append(sys.argv[1]); from kdcli.export import _child; _child(*sys.argv[2:])"
# The longest a guarded conversion may take before it is given up.
CHILD_TIMEOUT = 1800


def export_model(model_path, out, format="tflite", quantize="none", data=None, unsafe=False,
                 min_agreement=MIN_INT8_AGREEMENT):
    """Export a `.keras` model for deployment.

    Args:
        model_path: the `.keras` model; the export outputs what it outputs
            (logits, softmax probabilities, or one sigmoid probability).
        out: the `.tflite` file, or the SavedModel folder, to write.
        format: `tflite` or `saved_model`.
        quantize: for TFLite: `none` (float32), `float16` (float16 weights),
            `dynamic` (int8 weights, float activations) or `int8` (full-integer:
            int8 weights, activations, inputs and outputs, calibrated on
            samples of `data`).
        data: the `Dataset` whose training samples calibrate `int8`.
        unsafe: allow models that hold code (`Lambda` layers).
        min_agreement: `int8` only: the share of the calibration samples on
            which the export must give the model's class, else nothing is
            written (`KdcliError`); the share is recorded as `agreement`.

    Returns:
        The path written.

    Example:
        >>> export_model("student.keras", "student-int8.tflite", quantize="int8", data=load_data("digits"))
    """
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if format == "saved_model" and quantize != "none":
        raise UsageError("--quantize applies to --format tflite; a SavedModel keeps float32 weights")
    if quantize == "int8" and data is None:
        raise UsageError("--quantize int8 calibrates on real samples: give --data")
    out = check_export_output(out, format)
    from kdcli.models import count_params, head_kind

    model = load_model(model_path, unsafe=unsafe)
    output = head_kind(model, Path(model_path).name)  # and refuses what kdcli cannot run
    if format == "tflite" and model.inputs[0].dtype == "string":
        raise KdcliError(f"{Path(model_path).name}: takes strings (a TextVectorization layer or a tokenizer), which TFLite's "
                         "built-in operations cannot; export it with --format saved_model")
    params, trainable = count_params(model)
    samples = expected = None
    if quantize == "int8":  # the model's own outputs, before export_twin sets its recurrent layers to unroll
        samples = _calibration_samples(data, _takes_token_ids(model))
        from kdcli.tflite import class_columns

        expected = class_columns(np.asarray(model.predict(samples, batch_size=64, verbose=0), np.float32))
    twin, _, recurrent = export_twin(model, Path(model_path).name, unroll=format == "tflite")
    source_record = read_model_provenance(model_path) or {}
    record = provenance(
        "export", source=relative_to_artifact(model_path, out), source_sha256=sha256_file(model_path), format=format,
        quantize=quantize, params=params, trainable_params=trainable, output=output,
        data=rebase_data_record(source_record.get("data"), model_path, out),
        method=(source_record.get("hyperparameters") or {}).get("method"),
        calibration=data.describe(out) if quantize == "int8" else None,
    )
    try:  # in the nearest folder that exists: a refused export leaves no new folder behind
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=nearest_folder(out)) as tmp:
            saved = Path(tmp) / "saved_model"
            signature = _signature(twin, format, recurrent)
            _write_saved_model(twin, saved, signature)
            if format == "saved_model":
                (saved / "assets.extra").mkdir(exist_ok=True)
                (saved / "assets.extra" / "kdcli.json").write_text(json.dumps(record, indent=2))
                _replace_folder(saved, out)
                return out
            what = f"{Path(model_path).name} at --quantize {quantize}"
            # the quantizer has crashed on recurrent graphs: there, a child process (a few seconds more)
            guarded = recurrent and quantize != "none"
            flatbuffer = (_convert_in_child if guarded else _convert)(saved, quantize, samples, what)
            if quantize == "int8":
                record["agreement"] = _check_int8(flatbuffer, Path(tmp) / "check.tflite", samples, expected,
                                                  min_agreement, what, Path(model_path).name)
    except OSError as e:
        raise KdcliError(f"{out}: cannot write ({e.strerror or first_line(e)})") from e
    with atomic_path(out) as tmp_model:
        tmp_model.write_bytes(flatbuffer)
    record["sha256"] = sha256_file(out)  # ties the sidecar to this very file
    with atomic_path(sidecar(out)) as tmp_record:
        tmp_record.write_text(json.dumps(record, indent=2))
    return out


def check_export_output(out, format):
    """Refuse an export's output path before any work: a `.tflite` file, or a SavedModel folder
    (empty, absent, or a previous SavedModel that it replaces)."""
    out = Path(out)
    if format == "tflite":
        check_output(out, ".tflite")
    elif out.exists() and not out.is_dir():
        raise KdcliError(f"{out}: exists and is not a folder; a SavedModel is a folder")
    elif out.is_dir() and any(out.iterdir()) and not (out / "saved_model.pb").exists():
        raise KdcliError(f"{out}: a folder that is not a SavedModel is there; give another --out")
    else:
        check_folder(out)
    return out


def default_export_path(model_path, format, quantize):
    """`student.keras` -> `student.tflite`, `student-int8.tflite` or `student_saved_model/`."""
    model_path = Path(model_path)
    if format == "saved_model":
        return model_path.with_name(f"{model_path.stem}_saved_model")
    suffix = "" if quantize == "none" else f"-{quantize}"
    return model_path.with_name(f"{model_path.stem}{suffix}.tflite")


def export_twin(model, name, unroll=False):
    """The model as it is exported: its own layers and weights, rebuilt on a new input.

    - Random augmentation, dropout and noise layers (identities at inference)
      become `Identity`: their random ops would stay in the traced graph.
    - A model that reads token ids (an integer input, or one that goes only
      into `Embedding` layers) takes int32 ids, so that no export quantizes them.
    - With `unroll`, recurrent layers (`LSTM`, `GRU`, `SimpleRNN`, inside
      `Bidirectional` too) are unrolled over the model's own sequence length:
      TFLite cannot lower their loops (tensor lists) without static shapes,
      and the int8 converter can crash on them.

    Sequential and Functional models are rebuilt, nested ones too; any other
    model is exported as it is.

    Args:
        model: the loaded Keras model (its recurrent layers are set to unroll: load it for the export alone).
        name: what to call it in errors (its file name).
        unroll: unroll recurrent layers (for TFLite).

    Returns:
        `(twin, tokens, recurrent)`: the model to export, whether it takes token
        ids, and whether it holds recurrent layers.

    Raises:
        KdcliError: `unroll` and a recurrent layer over sequences of unknown length.
    """
    from kdcli._tf import keras

    if not _is_graph_model(model):
        return model, False, False
    tokens = _takes_token_ids(model)
    like = model.inputs[0]
    inputs = keras.Input(batch_shape=like.shape, dtype="int32" if tokens else like.dtype, name=like.name)
    rebuilder = _TwinBuilder(name, unroll)
    try:
        twin = rebuilder.model(model, inputs)
    except (ValueError, TypeError) as e:
        raise KdcliError(f"{name}: cannot rebuild the model for export ({first_line(e)})") from e
    return twin, tokens, rebuilder.recurrent


def _write_saved_model(model, folder, signature=None):
    """Write `model` as a SavedModel whose `serve` endpoint runs it in inference mode.

    `model.export` traces the call without a `training` argument, and a nested
    subclassed model (a KerasHub task inside kdcli's wrapper) then runs its batch
    normalisation in training mode: batch statistics in the export.
    """
    from kdcli._tf import keras, tf

    if signature is None:  # one input (kdcli exports one-input classifiers), any batch size
        x = model.inputs[0]
        signature = [tf.TensorSpec(x.shape, x.dtype, name=x.name)]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=signature)
    archive.write_out(str(folder), verbose=False)


def _signature(twin, format, recurrent):
    """The exported input signature: Keras' own (any batch size), but one sequence per call for a
    TFLite model with recurrent layers. A fixed batch folds the unrolled layers' zero initial states
    into constants; computed at run time, their int8 ranges are empty, which XNNPACK cannot prepare."""
    if format != "tflite" or not recurrent:
        return None
    from kdcli._tf import tf

    x = twin.inputs[0]
    return [tf.TensorSpec((1, *x.shape[1:]), x.dtype, name=x.name)]


def _is_graph_model(model):
    return type(model).__name__ in ("Sequential", "Functional")


def _first_layers(model):
    """The layers that take a Sequential or Functional model's input."""
    from kdcli._tf import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if type(model).__name__ == "Sequential":
        return layers[:1]
    x = model.inputs[0]
    return [op for op in model.operations
            if any(t is x for node in op._inbound_nodes for t in keras.tree.flatten(node.input_tensors))]


def _takes_token_ids(model):
    """Whether the export of `model` takes int32 token ids (see `export_twin`)."""
    return _is_graph_model(model) and _reads_token_ids(model)


def _reads_token_ids(model):
    """Whether a model takes token ids: an integer input, or one read only by `Embedding` layers."""
    from kdcli._tf import keras

    if str(model.inputs[0].dtype) in ("int32", "int64"):  # not uint8: pixels are quantized like any float
        return True
    first = _first_layers(model)
    return bool(first) and all(isinstance(layer, keras.layers.Embedding) or
                               (_is_graph_model(layer) and _reads_token_ids(layer)) for layer in first)


class _TwinBuilder:
    """Rebuild a model's graph on new inputs for `export_twin`, layer by layer (`clone_model`'s `call_function`)."""

    def __init__(self, name, unroll):
        self.name, self.unroll = name, unroll
        self.recurrent = False
        self.identities = {}  # id(layer) -> its Identity, one per layer however often it is called

    def model(self, model, inputs):
        """A twin of a Sequential or Functional `model` on the new `inputs` tensor."""
        from kdcli._tf import keras

        if type(model).__name__ == "Sequential":
            x = inputs
            for layer in model.layers:
                if not isinstance(layer, keras.layers.InputLayer):
                    x = self(layer, x)
            return keras.Model(inputs, x, name=model.name)
        structure = [inputs] if isinstance(model.input, list) else inputs
        # `lambda layer: layer` shares the layers, and their weights; `self` decides how each is called
        return keras.models.clone_model(model, input_tensors=structure, clone_function=lambda layer: layer,
                                        call_function=self)

    def __call__(self, layer, *args, **kwargs):
        from kdcli._tf import keras

        tensors = [t for t in keras.tree.flatten((args, kwargs)) if isinstance(t, keras.KerasTensor)]
        if _is_graph_model(layer):  # nested: rebuilt on the new tensor (int32 ids stay int32 inside)
            like = tensors[0]
            inputs = keras.Input(batch_shape=like.shape, dtype=like.dtype, name=layer.inputs[0].name)
            return self.model(layer, inputs)(*args, **kwargs)
        kind = type(layer).__name__
        if kind in _INFERENCE_IDENTITIES or (kind.startswith("Random") and kind != "RandomCrop" and
                                             type(layer).__module__.startswith("keras.src.layers.preprocessing")):
            identity = self.identities.setdefault(id(layer), keras.layers.Identity(name=layer.name))
            return identity(tensors[0])
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            self.recurrent = True
            if self.unroll:
                self._unroll(layer, tensors[0])
        return layer(*args, **kwargs)

    def _unroll(self, layer, x):
        from kdcli._tf import keras

        if len(x.shape) < 2 or x.shape[1] is None:
            raise KdcliError(
                f"{self.name}: the recurrent layer {layer.name!r} reads sequences of any length, and TFLite needs "
                "one fixed length; give the model a fixed input length, or export with --format saved_model"
            )
        rnns = [layer.forward_layer, layer.backward_layer] if isinstance(layer, keras.layers.Bidirectional) else [layer]
        for rnn in rnns:
            rnn.unroll = True  # read when the export traces the call; the loaded copy is this export's own


def _convert(saved, quantize, samples, what):
    """Convert a SavedModel to a TFLite flatbuffer, in this process.

    Args:
        saved: the SavedModel folder.
        quantize: one of `QUANTIZATIONS`.
        samples: the int8 calibration inputs (float32, or int32 token ids), else None.
        what: the model and quantization, for errors.
    """
    from kdcli._tf import native_output_silenced, tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":

        def representative():
            for x in samples:
                yield [x[None]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # applies to float inputs only: int32 token ids stay int32, unquantized
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with native_output_silenced(fds=(1, 2)):  # the converter prints its settings
            return converter.convert()
    except Exception as e:  # the converter raises many types, with long messages
        raise KdcliError(f"TFLite conversion of {what} failed ({_converter_reason(e)}); {_instead(quantize)}") from e


def _converter_reason(error):
    """The line of a converter error that says what failed (its first line is often only a location)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line[line.index("error:") + len("error:"):].strip().split("\\n")[0]
    return lines[0] if lines else type(error).__name__


def _instead(quantize):
    """What to use when TFLite cannot convert a model at `quantize`."""
    if quantize == "none":
        return "export with --format saved_model"
    return "try --quantize dynamic or none, or --format saved_model" if quantize == "int8" else \
        "try --quantize none, or --format saved_model"


def _convert_in_child(saved, quantize, samples, what):
    """`_convert` in a child Python process: a crash of the converter (it can segfault on recurrent
    models) is then one error line. Costs the child's start and TensorFlow import, a few seconds."""
    folder = Path(saved).parent
    out, error = folder / "model.tflite", folder / "error.txt"
    arguments = [str(saved), quantize, what, str(out), str(error), ""]
    if samples is not None:
        np.save(folder / "samples.npy", samples)
        arguments[-1] = str(folder / "samples.npy")
    import kdcli

    package_root = str(Path(kdcli.__file__).resolve().parent.parent)
    shown = os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"  # debugging: show what the converter says
    try:
        child = subprocess.run([sys.executable, "-c", _CHILD_CODE, package_root, *arguments],
                               stdin=subprocess.DEVNULL, capture_output=not shown, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        raise KdcliError(f"the TFLite converter did not finish within {CHILD_TIMEOUT // 60} minutes on {what}; "
                         f"{_instead(quantize)}") from e
    if child.returncode == 0 and out.is_file():
        return out.read_bytes()
    if error.is_file():
        raise KdcliError(error.read_text().strip())
    if child.returncode < 0:
        try:
            how = f"crashed ({signal.Signals(-child.returncode).name})"
        except ValueError:
            how = f"was killed by signal {-child.returncode}"
    else:
        last = [line for line in (child.stderr or "").splitlines() if line.strip()][-1:]
        how = f"exited with code {child.returncode}" + (f" ({last[0].strip()})" if last else "")
    raise KdcliError(f"the TFLite converter {how} on {what}; {_instead(quantize)}")


def _child(saved, quantize, what, out, error, samples):
    """The child process of `_convert_in_child`: the flatbuffer to `out`, or the error line to `error`."""
    try:
        flatbuffer = _convert(saved, quantize, np.load(samples) if samples else None, what)
    except KdcliError as e:
        Path(error).write_text(str(e))
        sys.exit(4)
    Path(out).write_bytes(flatbuffer)


def _calibration_samples(data, tokens=False):
    """A seeded random sample of training inputs for int8 calibration: float32, or int32 token ids."""
    n = len(data.train)
    idx = np.sort(np.random.default_rng(0).permutation(n)[:REPRESENTATIVE_SAMPLES])
    x = data.train.read(idx)
    return np.rint(x).astype(np.int32) if tokens else x.astype(np.float32)


def _check_int8(flatbuffer, path, samples, expected, minimum, what, name):
    """The share of the calibration `samples` on which the int8 `flatbuffer` gives the model's class
    (`expected`: the model's outputs); an export under `minimum` is refused with its likely cause.

    A tie at the top of the int8 output that includes the model's class counts as agreeing where the
    model's own margin is within one step of that output (as in a barely trained model): the file
    cannot tell those classes apart, and does not contradict the model. Elsewhere a tie is no answer,
    whichever tied class comes first.
    """
    from kdcli.tflite import TFLiteRunner

    path.write_bytes(flatbuffer)
    try:
        runner = TFLiteRunner(path)
        exported = runner.call(samples)
    except (KdcliError, ValueError, RuntimeError) as e:
        raise KdcliError(f"{what}: the converted model cannot run ({first_line(e)}); {_instead('int8')}") from e
    classes = np.argmax(expected, axis=-1)
    top_two = np.sort(expected, axis=-1)[:, -2:]
    at_top = exported == exported.max(axis=-1, keepdims=True)
    within_a_step = top_two[:, 1] - top_two[:, 0] <= runner.output_quantization[0]
    agree = at_top[np.arange(len(exported)), classes] & ((at_top.sum(axis=-1) == 1) | within_a_step)
    agreement = float(np.mean(agree))
    if agreement >= minimum:
        return agreement
    why, advice = "full-integer quantization loses too much of this model", ""
    step = runner.input_quantization[0]
    if samples.dtype.kind == "f" and step:
        widths = np.ptp(samples.reshape(-1, samples.shape[-1]), axis=0)  # per feature (per channel of images)
        coarse = int(np.sum((widths > 0) & (widths < 10 * step)))
        if coarse:
            why = (f"its input has one int8 scale, in steps of {step:.3g}, which leaves {coarse} of its "
                   f"{len(widths)} input features fewer than 10 steps")
            advice = "scale the features in the data and train again, or "
    needed = int(np.ceil(round(minimum * len(samples), 9)))  # 0.07 * 100 is 7.000000000000001
    raise KdcliError(f"{what}: the int8 model gives {name}'s class on {int(np.sum(agree))} of its {len(samples)} "
                     f"calibration samples ({agreement:.0%}; {needed} needed): {why}; {advice}"
                     "try --quantize dynamic or float16")


def _replace_folder(new, out):
    """Move a finished folder to `out`, replacing what was there only once the new one is in place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.move(str(new), staged)
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)
