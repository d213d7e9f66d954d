"""Any artifact's provenance, whatever its format: `read_provenance`.

Each format reads its own record: `.keras` models (`kdcli.model_files`),
soft-label `.h5` files (`kdcli.soft_labels`), `.tflite` exports and
SavedModel folders (`kdcli.export_records`). The low-level file I/O they share is in
`kdcli.files`.
"""

from pathlib import Path


def read_provenance(path):
    """The provenance record of an artifact, or None when it has none.

    Works for `.keras` models, `.h5` soft-label files (a legacy `.h5` model has none), `.tflite` exports (their
    `<file>.kdcli.json` sidecar) and SavedModel folders (`assets.extra/kdcli.json`).
    """
    from kdcli.export_records import read_export_provenance
    from kdcli.model_files import is_keras_h5, read_model_provenance
    from kdcli.soft_labels import read_soft_label_provenance

    path = Path(path)
    if path.suffix == ".tflite" or path.is_dir():
        return read_export_provenance(path)
    if path.suffix == ".keras":
        return read_model_provenance(path)
    if path.suffix in (".h5", ".hdf5"):
        return None if is_keras_h5(path) else read_soft_label_provenance(path)  # a legacy model has none
    return None
