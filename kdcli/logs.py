"""Training logs (`--log-dir`): per-epoch scalars as TensorBoard event files and a CSV.

Each run writes into its own folder (`DIR/student/`, `DIR/baseline/`... for
`distill`, `DIR` itself for `train-teacher`): `events.out.tfevents.*`, read
by TensorBoard, and `metrics.csv`, one row per epoch with the same columns.
"""

import csv
import io
from pathlib import Path

from kdcli.errors import KdcliError
from kdcli.files import write_text

CSV = "metrics.csv"


class TrainingLog:
    """The scalars of one training run, written once per epoch.

    Args:
        directory: the run's log folder (created).
        epochs_done: the epochs a resumed run has already done: rows of later
            epochs, written by the interrupted run after its last checkpoint,
            are dropped, since those epochs run again.
    """

    def __init__(self, directory, epochs_done=0):
        from kdcli._tf import tf

        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KdcliError(f"{self.directory}: cannot write training logs here ({e.strerror or e})") from e
        self.rows = _read_rows(self.directory / CSV, epochs_done)
        self._writer = tf.summary.create_file_writer(str(self.directory))

    def write(self, epoch, scalars):
        """Log an epoch's scalars (`{"loss": 0.41, "accuracy": 0.9, ...}`), `epoch` 1-based."""
        from kdcli._tf import tf

        # What TensorBoard's own tf.summary.scalar writes, without needing TensorBoard installed.
        metadata = tf.compat.v1.SummaryMetadata(plugin_data=tf.compat.v1.SummaryMetadata.PluginData(plugin_name="scalars"))
        with self._writer.as_default():
            for name, value in scalars.items():
                tf.summary.write(name, tf.constant(value, tf.float32), step=epoch, metadata=metadata)
        self._writer.flush()
        self.rows.append({"epoch": epoch, **scalars})
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        table = csv.DictWriter(text, columns, lineterminator="\n")
        table.writeheader()
        table.writerows(self.rows)
        write_text(self.directory / CSV, text.getvalue())  # atomic: a crash leaves the previous epoch's

    def close(self):
        self._writer.close()


def _read_rows(path, epochs_done):
    """The rows of an earlier run's CSV for its first `epochs_done` epochs (none when starting afresh)."""
    if not epochs_done or not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
                for row in csv.DictReader(f)]
    return [row for row in rows if row["epoch"] <= epochs_done]
