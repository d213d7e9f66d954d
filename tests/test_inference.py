"""Batched inference with several batches per compiled call: the validation pass, `evaluate`'s accuracy
and soft labels give the same outputs whatever the count, batch by batch."""

import numpy as np
import pytest

import kdcli
from kdcli.hooks import Validator
from kdcli.inference import Inference, iter_logits, predict_logits


@pytest.fixture(scope="module")
def digits():
    return kdcli.load_data("digits")


@pytest.fixture(scope="module")
def model(digits):
    return kdcli.build_model("mlp", digits, depth=0, seed=0)


def test_outputs_are_the_same_with_one_batch_a_call_several_or_the_chosen_count(digits, model):
    split = digits.train  # 1,437 samples: the last batch of 100 is short
    x = digits.train.arrays()[0].astype(np.float32)
    direct = np.concatenate([model(x[i:i + 100], training=False).numpy() for i in range(0, len(x), 100)])
    outputs = [predict_logits(model, split, 100, steps_per_call=k) for k in (1, 3, None)]
    assert outputs[0].shape == (len(split), 10) and outputs[0].dtype == np.float32
    np.testing.assert_allclose(outputs[0], direct, rtol=1e-6, atol=1e-6)
    for other in outputs[1:]:
        np.testing.assert_array_equal(other, outputs[0])  # the same ops on the same batches


def test_batches_come_one_at_a_time_and_progress_is_told_once_per_batch(digits, model):
    told = []

    class Progress:
        def start(self, total):
            told.append(("start", total))

        def advance(self, logs):
            told.append("advance")

        def stop(self):
            told.append("stop")

    batches = list(iter_logits(model, digits.train, 256, Progress(), steps_per_call=4))
    assert [len(b) for b in batches] == [256] * 5 + [len(digits.train) - 5 * 256]
    assert told == [("start", 6)] + ["advance"] * 6 + ["stop"]


def test_a_given_count_runs_that_many_batches_a_call_and_the_last_call_the_rest(digits, model):
    inference = Inference(model, steps_per_call=4)
    inference(digits.train, 100)  # 15 batches: a first call of 1, then 4, 4, 4 and 2
    assert inference.calls.calls == 5


def test_the_validation_pass_is_traced_once_across_epochs(digits, model):
    validate = Validator(model, digits.test)
    first = validate()
    for _ in range(3):
        assert validate() == first
    assert validate._infer._compiled.experimental_get_tracing_count() == 1


def test_a_call_returns_at_most_call_output_bytes_of_outputs(digits, model, monkeypatch):
    import kdcli.inference

    monkeypatch.setattr(kdcli.inference, "CALL_OUTPUT_BYTES", 3 * 100 * 10 * 4)  # three batches of 100 x 10
    inference = Inference(model, steps_per_call=128)
    outputs = inference(digits.train, 100)  # 15 batches: a first call of 1, then calls of 3
    assert inference.calls.calls == 1 + 5
    np.testing.assert_array_equal(outputs, predict_logits(model, digits.train, 100, steps_per_call=1))


@pytest.mark.parametrize("count", [0, -2, 1.5])
def test_a_count_below_one_is_refused(model, count):
    with pytest.raises(ValueError, match="steps_per_call must be 1 or more"):
        Inference(model, steps_per_call=count)
