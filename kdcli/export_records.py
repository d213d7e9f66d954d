"""The provenance of exports, read without TensorFlow: a `.tflite` file's sidecar
`<file>.kdcli.json`, a SavedModel folder's `assets.extra/kdcli.json` (written by `kdcli.export`)."""

import json
from pathlib import Path

from kdcli.errors import KdcliError, first_line
from kdcli.files import sha256_file


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
