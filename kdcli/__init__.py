"""kdcli: compress trained Keras models by knowledge distillation.

The command-line tool is a thin layer over this package; everything it does
can be called from Python too:

    import kdcli
    data = kdcli.load_data("digits")
    teacher = kdcli.build_model("cnn", data)
    kdcli.train(teacher, data, epochs=40, lr_schedule="cosine", augment="shift")

The public API (see each function's docstring):

- data: `load_data`, `Dataset`
- models: `build_model`, `build_from_spec`, `shrink`, `logits_model`
- teacher ensembles: `ensemble_model` (one logits model, the log of the
  teachers' mean probabilities; see `kdcli.ensembles`)
- training: `train`, `distill`
- inference: `predict_logits`
- methods: `make_method` (by name: `kd`, `dkd`, `dist`), `KD`, `DKD`, `DIST`
  (see `kdcli.methods`)
- the losses: `distillation_loss`, `distillation_loss_per_sample`,
  `dkd_loss_per_sample`, `dist_loss`, `standardize_logits`
- files: `load_model`, `save_model`, `read_provenance`, `write_soft_labels`,
  `read_soft_labels`
- evaluation: `evaluate_models`
- the four steps with files, as the CLI runs them: `kdcli.pipeline`
- errors: `KdcliError` (an expected failure with its exit code), `UsageError`
  (a bad option value, exit code 2)

Importing `kdcli` is cheap: TensorFlow is imported only when a function that
needs it is first used.
"""

import importlib as _importlib

__version__ = "0.1.0"

# Public name -> module that defines it, imported on first use.
_EXPORTS = {
    "KdcliError": "kdcli.errors",
    "UsageError": "kdcli.errors",
    "Dataset": "kdcli.data",
    "load_data": "kdcli.data",
    "distillation_loss": "kdcli.losses",
    "distillation_loss_per_sample": "kdcli.losses",
    "dkd_loss_per_sample": "kdcli.losses",
    "dist_loss": "kdcli.losses",
    "standardize_logits": "kdcli.losses",
    "make_method": "kdcli.methods",
    "KD": "kdcli.methods.kd",
    "DKD": "kdcli.methods.dkd",
    "DIST": "kdcli.methods.dist",
    "build_model": "kdcli.models",
    "build_from_spec": "kdcli.models",
    "logits_model": "kdcli.models",
    "shrink": "kdcli.models",
    "ensemble_model": "kdcli.ensembles",
    "load_model": "kdcli.model_files",
    "save_model": "kdcli.model_files",
    "read_provenance": "kdcli.artifacts",
    "train": "kdcli.training",
    "distill": "kdcli.training",
    "predict_logits": "kdcli.inference",
    "write_soft_labels": "kdcli.soft_labels",
    "read_soft_labels": "kdcli.soft_labels",
    "evaluate_models": "kdcli.evaluation",
}

__all__ = ["__version__", *_EXPORTS]


def __dir__():
    # `dir(kdcli)` and `help(kdcli)` list the public API, not only what is imported yet.
    return sorted({*globals(), *_EXPORTS})


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'kdcli' has no attribute {name!r}")
