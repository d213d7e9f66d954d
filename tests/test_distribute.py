"""tf.distribute training (mirrored, multi-worker) and sharded soft labels."""

import json
import socket

import h5py
import numpy as np
import pytest

import kdcli

from conftest import assert_one_line_error, finish, run_cli, start_kdcli


# A fixed budget, and one whose step size the validation split lowers (set on a mirrored variable).
@pytest.mark.slow
@pytest.mark.parametrize("budget", [["--epochs", "4"], ["--lr-schedule", "plateau", "--patience", "3", "--max-epochs",
                                                        "8", "--learning-rate", "0.2"]])
def test_mirrored_over_two_logical_cpus_matches_the_default_strategy(pipeline, tmp_path, budget):
    digits = kdcli.load_data("digits")
    # 1,437 samples: the last batch (29) splits unevenly over the 2 replicas
    np.savez(tmp_path / "odd.npz", x_train=digits.x_train[:1437], y_train=digits.y_train[:1437],
             x_test=digits.x_test, y_test=digits.y_test)
    args = ["distill", "--teacher", pipeline["teacher"], "--data", tmp_path / "odd.npz", "--student", "mlp",
            *budget, "--seed", "2"]
    default = finish(start_kdcli(*args, "--batch-size", "64", "--out", tmp_path / "default.keras"))
    # 2 replicas x 32 = the same global batch of 64: the same steps, up to float rounding
    mirrored = finish(start_kdcli(*args, "--strategy", "mirrored", "--batch-size", "32", "--log-dir", tmp_path / "logs",
                                    "--out", tmp_path / "mirrored.keras", env={"KDCLI_CPU_DEVICES": "2"}))
    assert (tmp_path / "logs" / "student" / "metrics.csv").exists()  # the step size read from a mirrored variable
    assert default.strip() == str(tmp_path / "default.keras") and mirrored.strip() == str(tmp_path / "mirrored.keras")
    a, b = (kdcli.read_provenance(tmp_path / f"{n}.keras") for n in ("default", "mirrored"))
    assert b["hyperparameters"]["strategy"] == "mirrored" and b["hyperparameters"]["replicas"] == 2
    assert a["hyperparameters"]["replicas"] == 1
    assert abs(a["metrics"]["test_accuracy"] - b["metrics"]["test_accuracy"]) <= 0.01
    assert a["metrics"].get("lr_decays") == b["metrics"].get("lr_decays")
    assert "--epochs" in budget or a["metrics"]["lr_decays"]
    for wa, wb in zip(kdcli.load_model(tmp_path / "default.keras").get_weights(),
                      kdcli.load_model(tmp_path / "mirrored.keras").get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-4)
    if "--epochs" in budget:  # mirrored, one step a compiled call: the same student as several a call
        finish(start_kdcli(*args, "--strategy", "mirrored", "--batch-size", "32", "--steps-per-call", "1",
                           "--out", tmp_path / "one.keras", env={"KDCLI_CPU_DEVICES": "2"}))
        for wa, wb in zip(kdcli.load_model(tmp_path / "one.keras").get_weights(),
                          kdcli.load_model(tmp_path / "mirrored.keras").get_weights()):
            assert np.array_equal(wa, wb)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_writes_exactly_one_student(pipeline, tmp_path):
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    out = tmp_path / "run" / "student.keras"
    workers = [
        start_kdcli("distill", "--soft-labels", pipeline["soft"], "--student", "mlp", "--epochs", "2",
                      "--strategy", "multi-worker", "--batch-size", "32", "--out", out,
                      env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    outputs = [finish(w) for w in workers]
    assert [o.strip() for o in outputs] == [str(out)] * 2
    assert sorted(p.name for p in out.parent.rglob("*")) == ["student.keras"]  # no checkpoints or scratch left
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["strategy"] == "multi-worker"
    assert record["hyperparameters"]["replicas"] == 2
    assert record["metrics"]["test_accuracy"] > 0.5


def test_multi_worker_without_tf_config(pipeline, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    r = run_cli("distill", "--soft-labels", pipeline["soft"], "--strategy", "multi-worker", "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 2, "--strategy multi-worker needs the TF_CONFIG environment variable")


def shards(pipeline, tmp_path, count=3, **options):
    parts = []
    for i in range(1, count + 1):
        part = tmp_path / f"part{i}.h5"
        extra = [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
        r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--shard", f"{i}/{count}", "--out", part, *extra)
        assert r.exit_code == 0, r.stderr
        parts.append(part)
    return parts


@pytest.mark.slow
def test_sharded_soft_labels_merge_to_the_unsharded_file(pipeline, tmp_path):
    parts = shards(pipeline, tmp_path)
    with h5py.File(parts[1]) as f:
        assert f["logits"].shape == (512, 10) and f.attrs["row_start"] == 512  # 6 batches of 256: 2 per shard
    r = run_cli("distill", "--soft-labels", parts[0], "--out", tmp_path / "s.keras")
    assert_one_line_error(r, 4, "one part of a sharded run (1/3); merge the parts first")
    r = run_cli("soft-labels", "merge", parts[2], parts[0], parts[1], "--out", tmp_path / "merged.h5")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{tmp_path / 'merged.h5'}\n"
    merged, whole = kdcli.read_soft_labels(tmp_path / "merged.h5"), kdcli.read_soft_labels(pipeline["soft"])
    np.testing.assert_array_equal(merged.logits, whole.logits)
    for key in ("n", "num_classes", "fingerprint", "teacher_sha256", "format_version", "dtype"):
        assert merged.attrs[key] == whole.attrs[key]
    assert "shard_index" not in merged.attrs
    r = run_cli("distill", "--soft-labels", tmp_path / "merged.h5", "--epochs", "1", "--out", tmp_path / "s.keras")
    assert r.exit_code == 0, r.stderr


def test_sharded_top_k_soft_labels_merge(pipeline, tmp_path):
    parts = shards(pipeline, tmp_path, count=2, top_k=3)
    assert run_cli("soft-labels", "merge", *parts, "--out", tmp_path / "m.h5").exit_code == 0
    assert run_cli("soft-labels", "--teacher", pipeline["teacher"], "--top-k", "3", "--out", tmp_path / "w.h5").exit_code == 0
    # shards begin on a batch boundary: the teacher saw the very batches of the unsharded run
    np.testing.assert_array_equal(kdcli.read_soft_labels(tmp_path / "m.h5").logits,
                                  kdcli.read_soft_labels(tmp_path / "w.h5").logits)


def test_merge_refuses_overlapping_missing_and_foreign_parts(pipeline, tmp_path):
    parts = shards(pipeline, tmp_path)
    out = tmp_path / "m.h5"
    r = run_cli("soft-labels", "merge", parts[0], parts[1], parts[1], parts[2], "--out", out)
    assert_one_line_error(r, 4, "overlap another part")
    r = run_cli("soft-labels", "merge", parts[0], parts[2], "--out", out)
    assert_one_line_error(r, 4, "rows 512..1023 are in no part; add the missing shard")  # 6 batches of 256
    halves = [tmp_path / "half1.h5", tmp_path / "half2.h5"]
    for i, half in enumerate(halves, start=1):
        assert run_cli("soft-labels", "--teacher", pipeline["teacher"], "--shard", f"{i}/2", "--out", half).exit_code == 0
    r = run_cli("soft-labels", "merge", halves[0], parts[1], parts[2], "--out", out)  # rows 0..767 and 512..
    assert_one_line_error(r, 4, "overlap another part")
    with h5py.File(parts[2], "a") as f:
        f.attrs["teacher_sha256"] = "0" * 64  # a part made with another teacher
    r = run_cli("soft-labels", "merge", *parts, "--out", out)
    assert_one_line_error(r, 4, f"{parts[2]}: does not belong with {parts[0]} (differs in teacher_sha256)")
    r = run_cli("soft-labels", "merge", pipeline["soft"], parts[0], "--out", out)
    assert_one_line_error(r, 4, "not a part of a sharded run")
    assert not out.exists()


def test_bad_shard_is_a_usage_error(pipeline, tmp_path):
    for shard in ("0/3", "4/3", "two"):
        r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--shard", shard, "--out", tmp_path / "s.h5")
        assert r.exit_code == 2
    r = run_cli("soft-labels", "--teacher", pipeline["teacher"], "--shard", "1/7", "--out", tmp_path / "s.h5")
    assert_one_line_error(r, 2, "--shard 1/7: more shards than the 6 batches of 256 training samples")


@pytest.mark.slow
def test_multi_worker_trains_with_a_batch_statistic_method(pipeline, tmp_path):
    """DIST's correlations are computed by each worker over its share of the batch."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    out = tmp_path / "student.keras"
    workers = [
        start_kdcli("distill", "--soft-labels", pipeline["soft"], "--method", "dist", "--student", "mlp",
                      "--epochs", "3", "--strategy", "multi-worker", "--batch-size", "32", "--out", out,
                      env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    for w in workers:
        finish(w)
    record = kdcli.read_provenance(out)
    assert record["hyperparameters"]["method"]["name"] == "dist"
    assert record["hyperparameters"]["replicas"] == 2
    assert record["metrics"]["test_accuracy"] > 0.3


@pytest.mark.slow
def test_xla_trains_the_same_student_up_to_rounding_and_is_refused_over_replicas(pipeline, tmp_path):
    args = ["distill", "--teacher", pipeline["teacher"], "--student", "mlp", "--epochs", "3", "--seed", "1"]
    finish(start_kdcli(*args, "--out", tmp_path / "plain.keras"))
    finish(start_kdcli(*args, "--xla", "--out", tmp_path / "xla.keras"))
    plain, xla = (kdcli.read_provenance(tmp_path / f"{n}.keras") for n in ("plain", "xla"))
    assert "xla" not in plain["hyperparameters"] and xla["hyperparameters"]["xla"] is True
    # XLA fuses the step's ops: the same sums in another order, so float rounding differs a little
    for wa, wb in zip(kdcli.load_model(tmp_path / "plain.keras").get_weights(),
                      kdcli.load_model(tmp_path / "xla.keras").get_weights()):
        np.testing.assert_allclose(wa, wb, atol=1e-3)
    assert abs(xla["metrics"]["test_accuracy"] - plain["metrics"]["test_accuracy"]) <= 0.02
    two = start_kdcli(*args, "--xla", "--strategy", "mirrored", "--out", tmp_path / "m.keras",
                      env={"KDCLI_CPU_DEVICES": "2"})
    out, err = two.communicate(timeout=300)
    assert two.returncode == 2 and out == "" and not (tmp_path / "m.keras").exists()
    assert err.strip().splitlines()[0] == ("error: --xla compiles a step for one replica, and this run has 2: "
                                           "leave --xla out, or train with --strategy default")


def test_xla_refuses_text(tmp_path):
    r = run_cli("train-teacher", "--data", "texts", "--epochs", "1", "--xla", "--out", tmp_path / "t.keras")
    assert_one_line_error(r, 2, "--xla cannot compile a text model's string operations: leave --xla out")
    assert not (tmp_path / "t.keras").exists()
