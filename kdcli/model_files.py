"""Model files: every format a Keras user has, loaded through one function, and `.keras` files
saved atomically with their provenance inside.

`load_model` reads a Keras 3 `.keras` file, a legacy Keras `.h5` file, or a
SavedModel folder (`model.export(...)`, `kdcli export --format saved_model`,
`tf.saved_model.save`), which has no architecture and is run for inference
only, through its serving signature (`kdcli.saved_models`). `model_format` tells them apart without
TensorFlow, and says which option takes a file that is not a model (soft
labels, a `.tflite` export). `import_modules` runs the modules that register a
model's custom layers (`--import`).
"""

import importlib
import importlib.util
import json
import re
import sys
import warnings
import zipfile
from pathlib import Path

from kdcli.errors import KdcliError, UsageError, first_line as _first_line
from kdcli.files import atomic_path, check_output

# Name of the provenance record inside a `.keras` file (a zip archive that
# Keras reads by member name, so an extra member does not disturb it).
PROVENANCE_MEMBER = "kdcli.json"

# What `load_model` reads, as `model_format` names them (and provenance records them).
MODEL_FORMATS = ("keras", "h5", "saved_model")
MODEL_HELP = "a Keras .keras or legacy .h5 file, or a SavedModel folder"


def save_model(model, path, record=None):
    """Save a Keras model to a `.keras` file atomically, with its provenance.

    Args:
        model: the Keras model.
        path: where to write it; its folder is created if needed.
        record: the provenance dict stored inside the file (see `kdcli.files.provenance`).
    """
    path = check_output(path, ".keras")
    with atomic_path(path) as tmp:
        model.save(tmp)
        if record is not None:
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(PROVENANCE_MEMBER, json.dumps(record, indent=2))
    return path


def model_format(path):
    """What kind of model file `path` is: `keras`, `h5` (a legacy Keras model) or `saved_model`.

    Reads only headers (no TensorFlow), so a wrong file is refused at once.

    Raises:
        KdcliError: the path is missing, or holds something that is not a model;
            the message says which option or command takes it.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise KdcliError(f"{path}: a folder without saved_model.pb, not a model; give {MODEL_HELP}")
    if not path.exists():
        raise KdcliError(f"{path}: no such model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        raise KdcliError(f"{path}: a TFLite export, which kdcli runs only in evaluate; give the .keras, .h5 or "
                         "SavedModel it was exported from")
    if suffix in (".h5", ".hdf5"):
        return _h5_kind(path)
    if suffix == ".keras" and zipfile.is_zipfile(path):
        return "keras"
    if suffix == ".keras":
        raise KdcliError(f"{path}: not a Keras .keras model file (not a zip archive); is it damaged?")
    raise KdcliError(f"{path}: not a model file; give {MODEL_HELP}")


def is_keras_h5(path):
    """Whether an `.h5` file holds a legacy Keras model (rather than soft labels or data)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "model_config" in f.attrs
    except OSError:
        return False


def _h5_kind(path):
    """`h5` for a legacy Keras model; soft labels and other HDF5 files are refused with what takes them."""
    import h5py

    from kdcli.soft_labels import FORMAT

    if is_keras_h5(path):
        return "h5"
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError as e:
        raise KdcliError(f"{path}: cannot read HDF5 file ({_first_line(e)})") from e
    if attrs.get("format") == FORMAT:
        raise KdcliError(f"{path}: soft labels, not a model; distill takes them with --soft-labels")
    raise KdcliError(f"{path}: an HDF5 file without a Keras model in it (no model_config); give {MODEL_HELP}")


def load_model(path, unsafe=False, data=None):
    """Load a model from any format `model_format` accepts, refusing code unless `unsafe`.

    Args:
        path: a `.keras` file, a legacy `.h5` file or a SavedModel folder.
        unsafe: allow `Lambda` layers and other deserialised code.
        data: the `Dataset` the model will run on; a SavedModel that kdcli did
            not export is run on a few of its training inputs, to tell whether
            it outputs probabilities or logits (see `kdcli.saved_models`).

    Returns:
        The Keras model (for a SavedModel, an inference-only wrapper).

    Raises:
        KdcliError: the file is missing, not a model, corrupt, or unsafe; or a
            custom layer is not registered (the message says to `--import` it).

    Example:
        >>> teacher = load_model("teacher.h5")
    """
    fmt = model_format(path)
    path = Path(path)
    hub = fmt == "keras" and hub_classes(path)
    if hub:
        from kdcli.hub import keras_hub

        keras_hub()  # or one line naming the extra that installs it
    from kdcli._tf import keras

    if fmt == "saved_model":
        from kdcli.saved_models import load_saved_model

        return load_saved_model(path, data)
    if unsafe:
        from kdcli.console import stderr

        stderr.print(f"warning: --unsafe: loading {path} may run code it holds", markup=False, highlight=False)
    try:
        with warnings.catch_warnings():  # "Skipping variable loading for optimizer": none is needed
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as e:  # Keras raises many types for a damaged file or an unknown class
        raise KdcliError(f"{path}: cannot load model ({load_failure(e)})") from e
    if hub:
        from kdcli.hub import is_task, runnable

        if is_task(model):  # its preprocessor runs wherever kdcli runs the model
            return runnable(model)
    return model


def hub_classes(path):
    """The KerasHub classes a `.keras` file names (`BertTextClassifier`...), read from its config
    without importing Keras; empty for a plain Keras model."""
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    found, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            registered, module = node.get("registered_name"), node.get("module")
            if (isinstance(registered, str) and registered.startswith("keras_hub>")) or \
                    (isinstance(module, str) and module.split(".")[0] == "keras_hub"):
                found.append(node.get("class_name") or registered)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return list(dict.fromkeys(found))


def load_failure(error):
    """The real cause of a failed Keras load, in one line, with what to do about it.

    Keras wraps the cause (`Could not locate class 'X'`) in a long message whose
    first line names only the outer model; the cause is in the exception chain
    or at the end of the message.
    """
    texts = []
    while error is not None and len(texts) < 10:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    text = "\n".join(texts)
    missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text) or \
        re.search(r"Unknown (?:layer|object|class)[^']*'([^']+)'", text)
    if not missing and "passing `safe_mode=False`" in text:
        return "the model holds code (a Lambda layer) that is not loaded by default; pass --unsafe if you trust this file"
    if missing:
        name = missing.group(1)
        module = re.search(r"'module': '([^']+)', 'class_name': '" + re.escape(name.split(">")[-1]) + "'", text)
        keras_own = module and (module.group(1) == "keras" or module.group(1).startswith("keras."))
        where = f" (module {module.group(1)})" if module and not keras_own else ""
        return (f"unknown class {name}{where}; import the code that registers it (with "
                "@keras.saving.register_keras_serializable) with --import MODULE or --import path/to/file.py")
    return _first_line(texts[-1] if texts else "")


def import_modules(specs):
    """Import the modules that register a model's custom layers (`--import`), before it is loaded.

    Args:
        specs: module names (`mypackage.layers`) or paths to `.py` files.

    Raises:
        UsageError: a module that cannot be found.
        KdcliError: a module that fails while it is imported.
    """
    if specs:
        import kdcli._tf  # noqa: F401 - TensorFlow quietly first: a module that imports Keras would print its logs
    for spec in specs or ():
        spec = str(spec)
        path = Path(spec)
        try:
            if spec.endswith(".py") or path.is_file():
                if not path.is_file():
                    raise UsageError(f"--import {spec}: no such file")
                _import_file(path)
            else:
                importlib.import_module(spec)
        except KdcliError:
            raise
        except ModuleNotFoundError as e:
            raise UsageError(f"--import {spec}: no module named {e.name!r} (give a module on the Python path, "
                             "or a path to a .py file)") from e
        except Exception as e:  # the user's module failed: its own error, briefly
            raise KdcliError(f"--import {spec}: the module failed ({type(e).__name__}: {_first_line(e)})") from e


def _import_file(path):
    """Import a `.py` file as the module named by its stem, with its folder on the path for its own imports."""
    name, folder = path.stem, str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    before = sys.modules.get(name)
    sys.modules[name] = module  # registered classes record their module by this name
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        if before is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = before
        raise


def read_model_provenance(path):
    """The provenance record inside a `.keras` file, or None (a legacy `.h5` file has no room for one;
    a SavedModel's is read by `kdcli.export_records`)."""
    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            if PROVENANCE_MEMBER not in z.namelist():
                return None
            return json.loads(z.read(PROVENANCE_MEMBER))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise KdcliError(f"{path}: not a Keras .keras model file ({_first_line(e)})") from e
