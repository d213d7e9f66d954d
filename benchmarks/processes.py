"""The reference processes of speed.py's whole-process measures, each a complete program as a user runs it.

    python benchmarks/processes.py fit DATA STUDENT EPOCHS [SPE [JIT [PRECISION]]]  # plain model.fit, hard labels
    python benchmarks/processes.py distiller DATA TEACHER EPOCHS    # keras.distillation.Distiller, online
    python benchmarks/processes.py predict DATA TEACHER             # the teacher's own predict on the training split

DATA is a `--data` value; STUDENT a kdcli student spec (`mlp`); TEACHER a `.keras` file. Each loads the
data as kdcli does, builds the same student kdcli would (seed 0) and trains with batches of 64, Adam at
1e-3, the data in memory: the fastest path Keras offers. `fit`'s optional SPE is compile's
`steps_per_execution` (Keras' default 1 when left out) and JIT its `jit_compile` (true, false or auto,
Keras' default auto when left out), and PRECISION `bf16` builds the student to compute in bfloat16, as
kdcli's `--mixed-precision bf16` does (float32 when left out).
"""

import sys

import numpy as np

import kdcli

BATCH = 64


def arrays(data):
    x, y = data.train.arrays()
    return x.astype("float32"), y


def fit(data, student, epochs, steps_per_execution=None, jit_compile=None, mixed_precision=None):
    import keras

    options = {"steps_per_execution": steps_per_execution, "jit_compile": jit_compile}
    model = kdcli.build_from_spec(student, data, seed=0, mixed_precision=mixed_precision)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  **{k: v for k, v in options.items() if v is not None})  # Keras' defaults when not given
    model.fit(*arrays(data), batch_size=BATCH, epochs=epochs, verbose=0)


def distiller(data, teacher_path, epochs, student="mlp"):
    import keras

    teacher = kdcli.logits_model(kdcli.load_model(teacher_path))
    model = keras.distillation.Distiller(
        teacher=teacher, student=kdcli.build_from_spec(student, data, seed=0),
        distillation_losses=keras.distillation.LogitsDistillation(temperature=4.0, loss=keras.losses.KLDivergence()),
        student_loss_weight=0.1,  # alpha = 0.9 on the distillation term, as kdcli's default
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*arrays(data), batch_size=BATCH, epochs=epochs, verbose=0)


def predict(data, teacher_path):
    teacher = kdcli.load_model(teacher_path)
    logits = teacher.predict(arrays(data)[0], batch_size=256, verbose=0)
    assert np.all(np.isfinite(logits))


if __name__ == "__main__":
    kind, data_value, *rest = sys.argv[1:]
    data = kdcli.load_data(data_value)
    if kind == "fit":
        jit = {"true": True, "false": False, "auto": "auto"}
        fit(data, rest[0], int(rest[1]), int(rest[2]) if len(rest) > 2 else None,
            jit[rest[3].lower()] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else None)
    elif kind == "distiller":
        distiller(data, rest[0], int(rest[1]))
    else:
        predict(data, rest[0])
