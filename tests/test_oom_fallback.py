"""GPU out-of-memory: retry with a smaller batch (part of the bad-input catalogue)."""

import pytest
import torch

from workflow_scripts.em.sft import train_with_oom_fallback
from workflow_scripts.em.training import EmTrainSettings


class FakeTrainer:
    def __init__(self, settings, fail):
        self.settings = settings
        self.fail = fail
        self.resumed_from = "unset"

    def train(self, resume_from_checkpoint=None):
        self.resumed_from = resume_from_checkpoint
        if self.fail:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "result"


def test_em_training_retries_with_half_the_batch_and_same_global_batch(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    built = []

    def make(settings):
        trainer = FakeTrainer(settings, fail=settings.per_device_batch > 1)
        built.append(trainer)
        return trainer

    settings = EmTrainSettings(per_device_batch=4, grad_accum=4)
    _, result, final = train_with_oom_fallback(make, settings, None, tmp_path)
    assert result == "result"
    assert [(t.settings.per_device_batch, t.settings.grad_accum) for t in built] == [
        (4, 4),
        (2, 8),
        (1, 16),
    ]
    assert final.global_batch == settings.global_batch == 16
    # the retries resume from the last checkpoint written before the error
    assert built[0].resumed_from is None and built[-1].resumed_from.endswith("checkpoint-3")
    # a retry is the same run: its checkpoints are resumable, not stale
    assert final.run_identity() == settings.run_identity()


def test_em_training_gives_up_at_batch_one(tmp_path):
    def make(settings):
        return FakeTrainer(settings, fail=True)

    with pytest.raises(torch.OutOfMemoryError):
        train_with_oom_fallback(
            make, EmTrainSettings(per_device_batch=1, grad_accum=16), None, tmp_path
        )


def test_generation_halves_the_batch_on_out_of_memory_and_keeps_every_row():
    from workflow_scripts.engines.base import Completion, GenerationRequest, SamplingParams
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    engine = object.__new__(TransformersEngine)  # no model: _generate_batch is replaced
    engine.max_batch_sequences = 8
    engine._fitting_requests = None
    tried = []

    def generate_batch(batch):
        tried.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return [Completion(r.key, 0, f"text {r.key}", "stop", 1, 1, "hi") for r in batch]

    engine._generate_batch = generate_batch
    params = SamplingParams(n=1, max_new_tokens=4)
    requests = [
        GenerationRequest(key=f"q{i}", messages=({"role": "user", "content": "hi"},), params=params)
        for i in range(12)
    ]
    rows = [c.key for batch in engine.generate(requests) for c in batch]
    assert rows == [f"q{i}" for i in range(12)]  # none lost, none duplicated, in order
    # first batch of 8: 8 -> 4 -> 2 fits; afterwards batches go straight to 2
    assert tried == [8, 4, 2, 2, 2, 2, 2, 2]
    assert engine._fitting_requests == 2


def test_generation_out_of_memory_on_a_single_request_is_raised():
    from workflow_scripts.engines.base import GenerationRequest, SamplingParams
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    engine = object.__new__(TransformersEngine)
    engine.max_batch_sequences = 1
    engine._fitting_requests = None

    def generate_batch(batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    engine._generate_batch = generate_batch
    request = GenerationRequest(
        key="q", messages=({"role": "user", "content": "hi"},), params=SamplingParams(n=1)
    )
    with pytest.raises(torch.OutOfMemoryError):
        list(engine.generate([request]))
