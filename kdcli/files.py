"""Low-level file I/O shared by every artifact: atomic writes, checksums, provenance records,
output checks, and paths recorded relative to an artifact.

Every artifact kdcli writes appears at its final path only when complete: it
is written to a temporary file in the same folder, flushed, then renamed over
the target. Every artifact also carries a provenance record ("run card"):
the kdcli version, the command line, the data fingerprint, the teacher's
sha256 where there is one, the hyperparameters and the final metrics. Each
file format stores and reads its record itself (`kdcli.model_files`,
`kdcli.soft_labels`, `kdcli.export`); `kdcli.artifacts.read_provenance`
reads any of them.
"""

import contextlib
import datetime
import hashlib
import os
import sys
import tempfile
from pathlib import Path

from kdcli.errors import KdcliError, first_line as _first_line
from kdcli.faults import fault_point


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it to `path` on success.

    On an exception the temporary file is removed and `path` keeps what it
    held before (or stays absent).

    Example:
        >>> with atomic_path("out/model.keras") as tmp:
        ...     model.save(tmp)
    """
    path = Path(path)
    if path.is_dir():
        raise KdcliError(f"{path}: is a directory; give a file path")
    if path.exists() and not path.is_file():
        raise KdcliError(f"{path}: is not a regular file; give a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise KdcliError(f"{path}: cannot write here ({e.strerror or e})") from e
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; artifacts are shared like any file
        fault_point("artifact-written")
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # A full disk or a vanished folder: OSError, or h5py's RuntimeError on a failed flush.
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and "write" in str(e).lower()):
            reason = e.strerror if isinstance(e, OSError) and e.strerror else _first_line(e)
            raise KdcliError(f"{path}: cannot write ({reason}); nothing was written") from e
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text, append=False):
    """Write a text file (a report) atomically; a device, a pipe or a link to one
    (`/dev/stdout`, `/dev/full`) is written directly.

    Args:
        path: the file.
        text: what to write.
        append: add `text` after what the file holds (the whole file is still
            replaced atomically), as a CI job summary expects.
    """
    path = Path(path)
    special = path.is_symlink() or (path.exists() and not path.is_file() and not path.is_dir())
    if special or str(path.resolve()).startswith(("/dev/", "/proc/")):
        try:
            with open(path, "a" if append else "w") as f:
                f.write(text)
        except OSError as e:
            raise KdcliError(f"{path}: cannot write ({e.strerror or e})") from e
        return path
    try:
        before = path.read_text() if append and path.is_file() else ""
    except (OSError, UnicodeDecodeError) as e:
        raise KdcliError(f"{path}: cannot append to it ({getattr(e, 'strerror', None) or e})") from e
    if before and not before.endswith("\n"):
        before += "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(before + text)
    return path


def artifact_size(path):
    """The bytes of a file, or of all the files in a folder (a SavedModel)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def sha256_file(path):
    """The hex sha256 of a file's bytes, or of a folder's (a SavedModel): each file's path
    relative to the folder and its bytes, in sorted order."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(f"{file.relative_to(path).as_posix()}\0".encode())
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - used at once
                h.update(block)
    return h.hexdigest()


def provenance(kind, **fields):
    """A provenance record for a new artifact of the given kind.

    Args:
        kind: what the artifact is (`teacher`, `soft-labels`, `student`).
        **fields: what it came from: `data`, `teacher_sha256`,
            `hyperparameters`, `metrics`...
    """
    from kdcli import __version__

    return {
        "kind": kind,
        "kdcli_version": __version__,
        "command": " ".join(["kdcli", *sys.argv[1:]]) if _running_cli() else None,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


def _running_cli():
    return Path(sys.argv[0]).name in ("kdcli", "__main__.py")


def relative_to_artifact(path, artifact):
    """`path` as recorded in the provenance of `artifact`: a relative path becomes relative to
    the artifact's folder, so that it resolves wherever that folder is read from (see
    `locate_recorded`); an absolute path stays absolute, as the user gave it."""
    if Path(path).is_absolute():
        return str(path)
    return os.path.relpath(Path(path).absolute(), Path(artifact).absolute().parent)


def locate_recorded(path, artifact):
    """The file or folder that a path recorded in `artifact`'s provenance names, or None.

    A relative path is looked for beside the artifact first (how kdcli records
    paths), then from the current folder (how older artifacts recorded them).
    """
    path = Path(path)
    candidates = [path] if path.is_absolute() else [Path(os.path.normpath(Path(artifact).parent / path)), path]
    return next((str(c) for c in candidates if c.exists()), None)


def rebase_recorded(path, source, artifact):
    """A path recorded in the provenance of `source`, as `artifact`'s provenance records it."""
    found = locate_recorded(path, source) or os.path.normpath(Path(source).parent / path)
    return relative_to_artifact(found, artifact)


def nearest_folder(path):
    """The nearest folder above `path` that exists: where writing `path` would create folders from."""
    folder = Path(path).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def check_output(path, suffix=None, option="--out"):
    """Refuse an output path before any work is done: a wrong suffix, a directory,
    or a folder that cannot be written.

    Args:
        path: the output path.
        suffix: the suffix it must have, if any.
        option: the command-line option that gave it, named in the error.
    """
    path = Path(path)
    if path.is_dir():
        raise KdcliError(f"{path}: is a directory; give a file path for {option}")
    if suffix and path.suffix != suffix:
        raise KdcliError(f"{path}: give a path ending in {suffix} for {option}")
    check_folder(path)
    return path


def check_folder(path):
    """Refuse a path whose folders cannot be made or written: below a file, or in a read-only folder."""
    folder = nearest_folder(path)
    if not folder.is_dir():
        raise KdcliError(f"{path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK):
        raise KdcliError(f"{path}: cannot write in {folder} (permission denied)")
