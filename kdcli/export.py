"""Export: a `.keras` model to TFLite (with post-training quantization) or a SavedModel.

Both go through a TensorFlow SavedModel (`model.export`), the path Keras 3
supports on every version. Exports carry provenance like every artifact: a
`.tflite` file in a sidecar `<file>.kdcli.json` (the flatbuffer has no room
for it without extra tools), a SavedModel in `assets.extra/kdcli.json` (a
folder TF Serving ignores).

TensorFlow is imported when a model is exported, so that the command line
can take its choices (`FORMATS`, `QUANTIZATIONS`) from here at once.
"""

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kdcli.data import rebase_data_record
from kdcli.errors import KdcliError, UsageError, first_line
from kdcli.files import atomic_path, check_output, provenance, relative_to_artifact, sha256_file
from kdcli.model_files import load_model, read_model_provenance

FORMATS = ("tflite", "saved_model")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
REPRESENTATIVE_SAMPLES = 300


def export_model(model_path, out, format="tflite", quantize="none", data=None, unsafe=False):
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
        raise KdcliError(f"{Path(model_path).name}: takes strings (a TextVectorization layer), which TFLite's "
                         "built-in operations cannot; export it with --format saved_model")
    params, trainable = count_params(model)
    source_record = read_model_provenance(model_path) or {}
    record = provenance(
        "export", source=relative_to_artifact(model_path, out), source_sha256=sha256_file(model_path), format=format,
        quantize=quantize, params=params, trainable_params=trainable, output=output,
        data=rebase_data_record(source_record.get("data"), model_path, out),
        method=(source_record.get("hyperparameters") or {}).get("method"),
        calibration=data.describe(out) if quantize == "int8" else None,
    )
    try:
        with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
            saved = Path(tmp) / "saved_model"
            model.export(saved, format="tf_saved_model", verbose=False)
            if format == "saved_model":
                (saved / "assets.extra").mkdir(exist_ok=True)
                (saved / "assets.extra" / "kdcli.json").write_text(json.dumps(record, indent=2))
                _replace_folder(saved, out)
                return out
            flatbuffer = _convert(saved, quantize, data)
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
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise KdcliError(f"{out}: cannot write here ({e.strerror or e})") from e
    return out


def default_export_path(model_path, format, quantize):
    """`student.keras` -> `student.tflite`, `student-int8.tflite` or `student_saved_model/`."""
    model_path = Path(model_path)
    if format == "saved_model":
        return model_path.with_name(f"{model_path.stem}_saved_model")
    suffix = "" if quantize == "none" else f"-{quantize}"
    return model_path.with_name(f"{model_path.stem}{suffix}.tflite")


def sidecar(path):
    """The provenance file of a `.tflite` export."""
    return Path(f"{path}.kdcli.json")


def read_export_provenance(path):
    """The provenance record of a `.tflite` export (its sidecar) or a SavedModel folder, or None.

    A sidecar belongs to the `.tflite` file whose sha256 it records: a stale one is ignored.
    """
    path = Path(path)
    record_file = sidecar(path) if path.suffix == ".tflite" else path / "assets.extra" / "kdcli.json"
    try:
        record = json.loads(record_file.read_text()) if record_file.is_file() else None
    except (OSError, ValueError) as e:
        raise KdcliError(f"{record_file}: cannot read provenance ({first_line(e)})") from e
    if record and path.suffix == ".tflite" and record.get("sha256") != sha256_file(path):
        return None
    return record


def _convert(saved, quantize, data):
    from kdcli._tf import native_output_silenced, tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        samples = _calibration_samples(data)

        def representative():
            for x in samples:
                yield [x[None]]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    try:
        with native_output_silenced(fds=(1, 2)):  # the converter prints its settings
            return converter.convert()
    except Exception as e:  # the converter raises many types, with long messages
        raise KdcliError(f"TFLite conversion failed ({first_line(e)})") from e


def _calibration_samples(data):
    """A seeded random sample of training inputs, float32, for int8 calibration."""
    n = len(data.train)
    idx = np.sort(np.random.default_rng(0).permutation(n)[:REPRESENTATIVE_SAMPLES])
    return data.train.read(idx).astype(np.float32)


def _replace_folder(new, out):
    """Move a finished folder to `out`, replacing what was there only once the new one is in place."""
    staged = out.with_name(f".{out.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.move(str(new), staged)
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    staged.rename(out)
    shutil.rmtree(old, ignore_errors=True)
