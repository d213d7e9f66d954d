"""Nothing lost: checkpoints and --resume, interruptions, safe loading, output problems.

The fault-injection tests run kdcli in real subprocesses and stop them with
SIGKILL or SIGINT at exact points (`KDCLI_FAULT`, see kdcli/faults.py), then
resume and compare with an uninterrupted run.
"""

import os
import subprocess

import numpy as np
import pytest

import kdcli

from conftest import STEPS_PER_EPOCH, assert_one_line_error, assert_same_weights, kdcli_process, run_cli, state, talk


def distill_args(pipeline, out, epochs=3, steps_per_call=1):
    """A short distillation that checkpoints at the end of every epoch (`--checkpoint-every 0`), one
    step a compiled call (so that a signal at a step stops the run at that step)."""
    return ["distill", "--soft-labels", pipeline["soft"], "--student", "cnn", "--width", "4", "--epochs", epochs,
            "--checkpoint-every", "0", "--steps-per-call", steps_per_call,
            "--seed", "3", "--out", out]


@pytest.fixture(scope="module")
def reference(pipeline, tmp_path_factory):
    """The student of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "student.keras"
    r = run_cli(*distill_args(pipeline, out))
    assert r.exit_code == 0, r.stderr
    return kdcli.load_model(out).get_weights()


@pytest.mark.slow
def test_sigkill_during_an_epoch_then_resume(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    r = kdcli_process(*distill_args(pipeline, out), fault=f"step:{STEPS_PER_EPOCH + 5}:KILL")
    assert r.returncode == -9
    assert not out.exists()
    assert state(tmp_path / "student.ckpt" / "student")["epochs_done"] == 1
    r = kdcli_process(*distill_args(pipeline, out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)
    assert not (tmp_path / "student.ckpt").exists()  # removed once the student is written
    assert kdcli.read_provenance(out)["metrics"]["test_accuracy"] > 0


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130_then_resume(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    r = kdcli_process(*distill_args(pipeline, out), fault=f"step:{2 * STEPS_PER_EPOCH + 3}:INT")
    assert r.returncode == 130
    lines = talk(r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr
    # the step it was in finished, then a checkpoint of 2 epochs and 3 steps
    assert lines[0].startswith("error: interrupted in epoch 3 after step 3 of 23; saved in")
    assert lines[0].endswith("run the same command with --resume to continue")
    assert state(tmp_path / "student.ckpt" / "student")["partial"]["step"] == 3
    assert not out.exists()
    r = kdcli_process(*distill_args(pipeline, out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call, boundary", [(1, 7), (4, 8)])
def test_sigterm_finishes_the_call_checkpoints_and_exits_143_then_resume(pipeline, reference, tmp_path,
                                                                         steps_per_call, boundary):
    out = tmp_path / "student.keras"
    args = [*distill_args(pipeline, out, steps_per_call=steps_per_call)[:-2], "--checkpoint-every", "60",
            "--out", out]  # the default interval
    r = kdcli_process(*args, fault=f"step:{STEPS_PER_EPOCH + 7}:TERM")
    assert r.returncode == 143
    lines = talk(r.stderr)
    # the call running step 7 ends (with K steps a call, at step 8), then the checkpoint
    assert lines == [f"error: stopped by SIGTERM in epoch 2 after step {boundary} of 23; saved in "
                     f"{tmp_path / 'student.ckpt'}/student: run the same command with --resume to continue"]
    assert not out.exists()
    r = kdcli_process(*args, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming from" in r.stderr and f"continuing with epoch 2 after its step {boundary}" in r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("steps_per_call, resumed_with", [(1, 1), (4, 4), (4, 6)])
def test_checkpoints_inside_an_epoch_resume_exactly(pipeline, reference, tmp_path, steps_per_call, resumed_with):
    out, ck = tmp_path / "student.keras", tmp_path / "ck"

    def args(k):
        return [*distill_args(pipeline, out, steps_per_call=k)[:-2], "--checkpoint-every", "0.000001",
                "--checkpoint-dir", ck, "--out", out]

    # an interval shorter than any step: a checkpoint after every call; killed in step 9 of epoch 2
    r = kdcli_process(*args(steps_per_call), fault=f"step:{STEPS_PER_EPOCH + 9}:KILL")
    assert r.returncode == -9
    assert state(ck / "student")["epochs_done"] == 1
    assert state(ck / "student")["partial"]["step"] == 8  # the end of the call before the kill's
    r = kdcli_process(*args(resumed_with), "--resume")  # a call's steps may change
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
def test_an_epoch_begun_counts_against_a_lowered_epochs(pipeline, tmp_path):
    out, ck = tmp_path / "student.keras", tmp_path / "ck"
    args = [*distill_args(pipeline, out)[:-2], "--checkpoint-every", "0.000001", "--checkpoint-dir", ck]
    r = kdcli_process(*args, "--out", out, fault=f"step:{STEPS_PER_EPOCH + 9}:KILL")
    assert r.returncode == -9
    r = run_cli(*[a if a != 3 else 1 for a in args], "--out", out, "--resume")
    assert_one_line_error(r, 4, "1 epoch done and one begun, more than --epochs 1; give --epochs 2 or more")


@pytest.mark.slow
def test_the_default_interval_checkpoints_a_short_run_only_at_its_end(pipeline, tmp_path):
    out = tmp_path / "student.keras"
    args = [*distill_args(pipeline, out)[:-2], "--checkpoint-every", "60", "--out", out]
    r = kdcli_process(*args, fault="checkpoint-written:1:KILL")  # 3 epochs in well under 60 s
    assert r.returncode == -9  # killed while writing the first checkpoint: the one of the run's end
    written = {p.name.split(".")[0] for p in (tmp_path / "student.ckpt" / "student").iterdir()}
    assert written == {"ckpt-3"}
    r = run_cli(*distill_args(pipeline, out), "--checkpoint-every", "-1")
    assert_one_line_error(r, 2, "--checkpoint-every must be a number of seconds of 0 or more, got -1.0")


@pytest.mark.slow
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    r = kdcli_process(*distill_args(pipeline, out), fault="checkpoint-written:2:KILL")
    assert r.returncode == -9
    checkpoints = tmp_path / "student.ckpt" / "student"
    assert state(checkpoints)["epochs_done"] == 1  # epoch 2's files are there, not recorded as good
    assert any(p.name.startswith("ckpt-2") for p in checkpoints.iterdir())
    r = kdcli_process(*distill_args(pipeline, out), "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
def test_sigkill_during_the_final_save_keeps_the_previous_file(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    out.write_bytes(b"the previous complete student")
    # artifacts written: state.json after each of the 3 epochs, then the student
    r = kdcli_process(*distill_args(pipeline, out), fault="artifact-written:4:KILL")
    assert r.returncode == -9
    assert out.read_bytes() == b"the previous complete student"
    assert state(tmp_path / "student.ckpt" / "student")["epochs_done"] == 3
    r = kdcli_process(*distill_args(pipeline, out), "--resume")  # nothing left to train: saves at once
    assert r.returncode == 0, r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
def test_teacher_training_resumes_too(tmp_path):
    args = ["train-teacher", "--arch", "mlp", "--width", "16", "--depth", "1", "--epochs", "2", "--seed", "1",
            "--checkpoint-every", "0"]
    r = run_cli(*args, "--out", tmp_path / "a.keras")
    assert r.exit_code == 0
    r = kdcli_process(*args, "--out", tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck",
                      fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    assert r.returncode == -9 and state(tmp_path / "ck")["epochs_done"] == 1
    r = kdcli_process(*args, "--out", tmp_path / "b.keras", "--checkpoint-dir", tmp_path / "ck", "--resume")
    assert r.returncode == 0, r.stderr
    assert_same_weights(tmp_path / "b.keras", kdcli.load_model(tmp_path / "a.keras").get_weights())


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [("KILL", -9), ("INT", 130)])
def test_soft_labels_interrupted_leave_no_file(pipeline, tmp_path, sig, code):
    out = tmp_path / "soft.h5"
    r = kdcli_process("soft-labels", "--teacher", pipeline["teacher"], "--batch-size", "256", "--out", out,
                      fault=f"soft-labels-batch:3:{sig}")
    assert r.returncode == code
    assert not out.exists()
    if sig == "INT":
        assert r.stderr.strip().splitlines() == ["error: interrupted"]
    leftovers = list(tmp_path.iterdir())
    assert all(p.name.startswith(".soft.") for p in leftovers)  # at most a hidden temporary file
    r = kdcli_process("soft-labels", "--teacher", pipeline["teacher"], "--out", out)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(kdcli.read_soft_labels(out).logits, kdcli.read_soft_labels(pipeline["soft"]).logits)


@pytest.mark.slow
def test_resume_refuses_checkpoints_of_another_run(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    kdcli_process(*distill_args(pipeline, out), fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "cnn", "--width", "4", "--epochs", "3",
                "--seed", "3", "--method", "kd:temperature=2", "--out", out, "--resume")
    assert_one_line_error(r, 4, "the checkpoint was made by a different run (differs in method.temperature)")
    assert "pass --restart instead of --resume" in r.stderr
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--student", "cnn", "--width", "4", "--epochs", "1",
                "--seed", "3", "--method", "kd:temperature=2", "--out", out, "--restart")  # the advice, followed
    assert r.exit_code == 0, r.stderr
    assert "resuming" not in r.stderr


@pytest.mark.slow
def test_a_rerun_never_discards_a_checkpoint_silently(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    r = kdcli_process(*distill_args(pipeline, out), fault=f"step:{STEPS_PER_EPOCH + 5}:INT")
    assert r.returncode == 130
    r = run_cli(*distill_args(pipeline, out))
    assert_one_line_error(r, 2, "student.ckpt/student holds the checkpoint of an unfinished run (1 epoch done): "
                                "pass --resume to continue it, or --restart to discard it and start over")
    assert state(tmp_path / "student.ckpt" / "student")["epochs_done"] == 1  # untouched
    r = run_cli(*distill_args(pipeline, out), "--resume")  # the first advice, followed
    assert r.exit_code == 0, r.stderr
    assert "1 of 3 epochs done, continuing with epoch 2" in r.stderr
    assert_same_weights(out, reference)


@pytest.mark.slow
def test_restart_discards_the_checkpoint_and_starts_over(pipeline, reference, tmp_path):
    out = tmp_path / "student.keras"
    kdcli_process(*distill_args(pipeline, out), fault=f"step:{2 * STEPS_PER_EPOCH + 1}:KILL")
    r = run_cli(*distill_args(pipeline, out), "--restart")  # the second advice, followed
    assert r.exit_code == 0, r.stderr
    assert "resuming" not in r.stderr
    assert_same_weights(out, reference)
    assert not (tmp_path / "student.ckpt").exists()


@pytest.mark.slow
def test_resume_refuses_a_damaged_checkpoint(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    kdcli_process(*distill_args(pipeline, out), fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    checkpoints = tmp_path / "s.ckpt" / "student"
    for data_file in checkpoints.glob("ckpt-1.data-*"):
        data_file.write_bytes(data_file.read_bytes()[:50])
    r = run_cli(*distill_args(pipeline, out), "--resume")
    assert_one_line_error(r, 4, "damaged checkpoint")
    (checkpoints / "state.json").write_text("{not json")
    r = run_cli(*distill_args(pipeline, out), "--resume")
    assert_one_line_error(r, 4, "damaged checkpoint state")
    assert "pass --restart instead of --resume" in r.stderr
    r = run_cli(*distill_args(pipeline, out), "--restart")  # the advice, followed
    assert r.exit_code == 0, r.stderr


def test_non_finite_loss_stops_with_exit_4_and_keeps_the_last_checkpoint(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(200) % 2)
    args = ["train-teacher", "--data", tmp_path / "d.npz", "--arch", "mlp", "--epochs", "30",
            "--learning-rate", "1e12", "--batch-size", "8", "--out", tmp_path / "t.keras"]
    r = run_cli(*args)
    assert_one_line_error(r, 4, "the training loss became")
    assert "lower --learning-rate or check the data" in r.stderr
    epoch = int(r.stderr.split(" in epoch ")[1].split(":")[0])
    if epoch > 1:
        assert state(tmp_path / "t.ckpt")["epochs_done"] == epoch - 1
    assert not (tmp_path / "t.keras").exists()


def test_lambda_model_needs_unsafe(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((8, 8)), keras.layers.Flatten(), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Dense(10)])
    model.save(tmp_path / "lambda.keras")
    r = run_cli("soft-labels", "--teacher", tmp_path / "lambda.keras", "--data", "digits", "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 4, "holds code (a Lambda layer) that is not loaded by default; pass --unsafe")
    r = run_cli("soft-labels", "--teacher", tmp_path / "lambda.keras", "--data", "digits", "--out", tmp_path / "s.h5",
                "--unsafe")
    assert r.exit_code == 0, r.stderr
    assert "warning: --unsafe: loading" in r.stderr


def test_corrupt_keras_and_h5_files(tmp_path, pipeline):
    (tmp_path / "zero.keras").write_bytes(b"")
    r = run_cli("evaluate", tmp_path / "zero.keras", "--data", "digits")
    assert_one_line_error(r, 4, "not a Keras .keras model file")
    soft = pipeline["soft"].read_bytes()
    (tmp_path / "half.h5").write_bytes(soft[: len(soft) // 2])
    r = run_cli("distill", "--soft-labels", tmp_path / "half.h5", "--data", "digits", "--out", tmp_path / "s.keras")
    assert r.exit_code == 4 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "half.h5" in r.stderr


def test_out_in_a_folder_that_cannot_be_made(tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    r = run_cli("train-teacher", "--arch", "mlp", "--epochs", "1", "--out", tmp_path / "file" / "t.keras")
    assert r.exit_code == 4 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"error: {tmp_path / 'file'}")


def test_report_to_a_full_device(pipeline):
    r = run_cli("evaluate", pipeline["teacher"], "--json", "/dev/full", "--latency-runs", "10")
    assert r.exit_code == 4
    assert r.stderr.strip().splitlines()[-1] == "error: /dev/full: cannot write (No space left on device)"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, where mounting is allowed (root); skipped elsewhere."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.slow
def test_full_disk_leaves_nothing_half_written(small_disk, pipeline, tmp_path):
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--out", small_disk / "s.h5")
    assert_one_line_error(r, 4, f"{small_disk / 's.h5'}: cannot write")
    r = run_cli("train-teacher", "--epochs", "1", "--out", small_disk / "t.keras", "--checkpoint-dir", tmp_path / "ck")
    assert_one_line_error(r, 4, f"{small_disk / 't.keras'}: cannot write (No space left on device)")
    r = run_cli("train-teacher", "--epochs", "1", "--out", tmp_path / "t.keras", "--checkpoint-dir", small_disk / "ck")
    assert_one_line_error(r, 4, "cannot write checkpoint (No space left on device)")
    assert list(small_disk.iterdir()) == []


@pytest.mark.slow
def test_extending_a_run_needs_a_constant_schedule(pipeline, tmp_path):
    out = tmp_path / "s.keras"
    args = ["distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--epochs", "2", "--checkpoint-every", "0",
            "--out", out]
    cosine = [*args, "--lr-schedule", "cosine"]
    r = kdcli_process(*cosine, fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")  # the schedule spans 2 epochs
    assert r.returncode == -9
    r = run_cli(*args[:-4], "--epochs", "3", "--out", out, "--lr-schedule", "cosine", "--resume")
    assert_one_line_error(r, 4, "the checkpoint was made by a different run (differs in epochs)")
    constant = [*args, "--lr-schedule", "constant"]
    out.unlink(missing_ok=True)
    r = kdcli_process(*constant, "--checkpoint-dir", tmp_path / "c", fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    assert r.returncode == -9
    r = run_cli(*[a if a != "2" else "3" for a in constant], "--checkpoint-dir", tmp_path / "c", "--resume")
    assert r.exit_code == 0, r.stderr
    assert kdcli.read_provenance(out)["hyperparameters"]["lr_schedule"] == "constant"


def test_artifacts_are_readable_like_any_file_and_other_checkpoints_stay(tmp_path):
    other = tmp_path / "runs" / "other-run"
    other.mkdir(parents=True)
    (other / "state.json").write_text("{}")  # another run's checkpoint, waiting for --resume
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    old_umask = os.umask(0o022)
    try:
        r = run_cli("train-teacher", "--arch", "mlp", "--epochs", "1", "--out", tmp_path / "runs" / "t.keras",
                    "--checkpoint-dir", tmp_path / "runs")
    finally:
        os.umask(old_umask)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "runs" / "t.keras").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["notes.txt", "other-run", "t.keras"]
    assert (other / "state.json").read_text() == "{}"


@pytest.mark.slow
def test_resume_with_fewer_epochs_than_done_says_how_many_and_that_works(pipeline, tmp_path):
    out = tmp_path / "student.keras"
    kdcli_process(*distill_args(pipeline, out), fault=f"step:{2 * STEPS_PER_EPOCH + 1}:KILL")
    r = run_cli(*distill_args(pipeline, out, epochs=1), "--resume")
    assert_one_line_error(r, 4, "the checkpoint has 2 epochs done, more than --epochs 1; give --epochs 2 or more")
    r = run_cli(*distill_args(pipeline, out, epochs=2), "--resume")  # the advice, followed
    assert r.exit_code == 0, r.stderr
    assert "2 of 2 epochs done" in r.stderr


@pytest.mark.slow
def test_checkpoints_of_another_command_in_the_same_folder_are_kept(pipeline, tmp_path):
    """A teacher's and a student's runs may share a --checkpoint-dir: each sees and removes only its own."""
    ck = tmp_path / "ck"
    teacher = ["train-teacher", "--arch", "mlp", "--width", "8", "--epochs", "2", "--checkpoint-every", "0",
               "--checkpoint-dir", ck, "--out", tmp_path / "t.keras"]
    r = kdcli_process(*teacher, fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    assert r.returncode == -9 and state(ck)["epochs_done"] == 1
    r = run_cli(*distill_args(pipeline, tmp_path / "s.keras", epochs=1), "--checkpoint-dir", ck)
    assert r.exit_code == 0, r.stderr  # the teacher's checkpoint is not the student's
    assert state(ck)["epochs_done"] == 1  # and it is still there
    r = run_cli(*teacher, "--resume")
    assert r.exit_code == 0, r.stderr
    assert "1 of 2 epochs done" in r.stderr
    assert not ck.exists()


@pytest.mark.slow
def test_restart_discards_nothing_when_the_command_fails_before_training(tmp_path):
    ck = tmp_path / "ck"
    args = ["train-teacher", "--arch", "mlp", "--width", "8", "--epochs", "2", "--checkpoint-every", "0",
            "--checkpoint-dir", ck, "--out", tmp_path / "t.keras"]
    kdcli_process(*args, fault=f"step:{STEPS_PER_EPOCH + 1}:KILL")
    assert state(ck)["epochs_done"] == 1
    r = run_cli(*args, "--restart", "--data", "digitz")
    assert_one_line_error(r, 4, "unknown data set 'digitz'")
    assert state(ck)["epochs_done"] == 1  # the checkpoint is only discarded when training starts
