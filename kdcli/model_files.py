"""`.keras` model files: saved atomically with their provenance inside, loaded safely."""

import json
import zipfile
from pathlib import Path

from kdcli.errors import KdcliError, first_line as _first_line
from kdcli.files import atomic_path, check_output

# Name of the provenance record inside a `.keras` file (a zip archive that
# Keras reads by member name, so an extra member does not disturb it).
PROVENANCE_MEMBER = "kdcli.json"


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


def load_model(path, unsafe=False):
    """Load a `.keras` model, refusing files that need arbitrary code unless `unsafe`.

    Args:
        path: the `.keras` file.
        unsafe: allow `Lambda` layers and other deserialised code.

    Returns:
        The Keras model.

    Raises:
        KdcliError: the file is missing, not a Keras model, corrupt, or unsafe.
    """
    from kdcli._tf import keras

    path = Path(path)
    if not path.is_file():
        raise KdcliError(f"{path}: no such model file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise KdcliError(f"{path}: not a Keras .keras model file")
    if unsafe:
        from kdcli.console import stderr

        stderr.print(f"warning: --unsafe: loading {path} may run code it holds", markup=False, highlight=False)
    try:
        return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
    except ValueError as e:
        if "safe_mode" in str(e) or "Lambda" in str(e):
            raise KdcliError(
                f"{path}: the model holds code (a Lambda layer) that is not loaded by default; "
                "pass --unsafe if you trust this file"
            ) from e
        raise KdcliError(f"{path}: cannot load model ({_first_line(e)})") from e
    except Exception as e:  # Keras raises many types for a damaged archive
        raise KdcliError(f"{path}: cannot load model ({_first_line(e)})") from e


def read_model_provenance(path):
    """The provenance record inside a `.keras` file, or None when it has none."""
    try:
        with zipfile.ZipFile(path) as z:
            if PROVENANCE_MEMBER not in z.namelist():
                return None
            return json.loads(z.read(PROVENANCE_MEMBER))
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise KdcliError(f"{path}: not a Keras .keras model file ({_first_line(e)})") from e
