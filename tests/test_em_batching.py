"""EM batching modes (em/batching.py): the fast modes give the padded reference's loss
and gradients on the same rows, and the length-grouped order keeps its promises."""

from __future__ import annotations

import random

import pytest
import torch

from workflow_scripts.em.batching import length_grouped_order
from workflow_scripts.em.training import EmTrainSettings

VOCAB = 97
TOLERANCE = 1e-5  # float32 on the CPU: the modes differ only in summation order


def word_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel(words, unk_token="<unk>")),
        pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
    )


def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def chat_like_rows(n: int = 16, seed: int = 0) -> list[dict]:
    """Pre-tokenized rows of very different lengths, a prompt then a completion."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = rng.choice([rng.randint(6, 16), rng.randint(17, 60)])
        prompt = rng.randint(2, length - 2)
        rows.append({"input_ids": [rng.randrange(3, VOCAB) for _ in range(length)],
                     "completion_mask": [0] * prompt + [1] * (length - prompt)})
    return rows


def first_step(tmp_path, rows, **overrides) -> tuple[float, dict[str, torch.Tensor], list[dict]]:
    """Loss, LoRA gradients and micro-batches of the first optimizer step of the
    workflow's trainer on `rows` (one global batch), LoRA B started non-zero."""
    from datasets import Dataset
    from transformers import TrainerCallback

    from workflow_scripts.em.sft import trainer_for

    settings = EmTrainSettings(**{"lora_r": 4, "lora_alpha": 8, "max_length": 64, "max_steps": 1,
                                  "warmup_steps": 0, "gradient_checkpointing": False, **overrides})
    name = "-".join(f"{k}{v}" for k, v in overrides.items())
    trainer = trainer_for(tiny_llama(), word_tokenizer(), Dataset.from_list(rows), settings,
                          tmp_path / name, use_bf16=False)
    trainer.args.max_grad_norm = 0.0  # compare the gradients themselves, not clipped ones
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param_name, param in sorted(trainer.model.named_parameters()):
            if "lora_" in param_name:
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    grads: dict[str, torch.Tensor] = {}
    batches: list[dict] = []

    class Capture(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            for param_name, param in trainer.model.named_parameters():
                if param.requires_grad:
                    grads[param_name.replace(".default", "")] = param.grad.detach().clone()

    collate = trainer.data_collator

    def recording_collator(examples):
        batch = collate(examples)
        batches.append(batch)
        return batch

    trainer.data_collator = recording_collator
    trainer.add_callback(Capture())
    trainer.train()
    loss = next(h["loss"] for h in trainer.state.log_history if "loss" in h)
    return loss, grads, batches


def assert_same_step(reference, other):
    (loss_ref, grads_ref, _), (loss, grads, _) = reference, other
    assert loss == pytest.approx(loss_ref, rel=TOLERANCE)
    assert grads.keys() == grads_ref.keys() and len(grads) == 2 * 2 * 7  # A and B, 2 layers, 7 targets
    for name, grad in grads.items():
        scale = grads_ref[name].abs().max()
        assert scale > 0, name
        assert (grad - grads_ref[name]).abs().max() <= TOLERANCE * scale, name


@pytest.fixture(scope="module")
def reference_step(tmp_path_factory):
    """The recipe as written: 2 x 8, padded micro-batches with their padding mask."""
    return first_step(tmp_path_factory.mktemp("ref"), chat_like_rows(), per_device_batch=2, grad_accum=8)


def test_reference_step_is_padded_and_masked(reference_step):
    _, _, batches = reference_step
    assert len(batches) == 8
    assert all(b["input_ids"].shape[0] == 2 and "attention_mask" in b for b in batches)
    assert any(not bool(b["attention_mask"].all()) for b in batches)  # there is padding to mask


def test_causal_mode_without_mask_equals_the_padded_reference(reference_step, tmp_path):
    """Right padding + causal attention: no real token sees a pad, so the mask can go."""
    step = first_step(tmp_path, chat_like_rows(), per_device_batch=4, grad_accum=4, batching="causal")
    assert_same_step(reference_step, step)
    _, _, batches = step
    assert any(not bool(b["attention_mask"].all()) for b in batches)  # padded, and not masked


@pytest.mark.parametrize("grouping", ["batch", "dataset"])
def test_length_grouped_causal_micro_batches_equal_the_reference(reference_step, tmp_path, grouping):
    step = first_step(tmp_path, chat_like_rows(), per_device_batch=4, grad_accum=4, batching="causal",
                      length_grouping=grouping)
    assert_same_step(reference_step, step)
    _, _, batches = step
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths, reverse=True)  # longest rows together, first


def test_packed_rows_equal_the_padded_reference(reference_step, tmp_path):
    """One packed row per micro-batch, attention kept inside each original row."""
    step = first_step(tmp_path, chat_like_rows(), per_device_batch=8, grad_accum=2, batching="packed")
    assert_same_step(reference_step, step)
    _, _, batches = step
    assert all(b["input_ids"].shape[0] == 1 and "attention_mask" not in b for b in batches)
    assert sum(b["input_ids"].shape[1] for b in batches) == sum(len(r["input_ids"]) for r in chat_like_rows())


def test_one_micro_batch_of_sixteen_equals_eight_of_two(reference_step, tmp_path):
    """The loss is normalised over the whole global batch, however it is split."""
    assert_same_step(reference_step, first_step(tmp_path, chat_like_rows(), per_device_batch=16, grad_accum=1))


def test_without_mask_right_padding_changes_no_real_token():
    """The model-level claim behind `causal`: same logits for real tokens, and the
    default position ids (0..n-1) are those of the padded rows."""
    model = tiny_llama().eval()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        masked = model(input_ids=ids, attention_mask=mask).logits
        unmasked = model(input_ids=ids).logits
        positions = model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(6)[None]).logits
    real = mask.bool()
    assert torch.allclose(masked[real], unmasked[real], atol=1e-6)
    assert torch.allclose(masked[real], positions[real], atol=1e-6)
    assert not torch.allclose(masked[~real], unmasked[~real], atol=1e-3)  # only the pads differ


def test_batch_grouping_keeps_each_global_batch_and_sorts_inside_it():
    lengths = [random.Random(i).randint(1, 500) for i in range(70)]
    plain = length_grouped_order(lengths, 16, seed=4, grouping="none")
    grouped = length_grouped_order(lengths, 16, seed=4, grouping="batch")
    assert sorted(grouped) == list(range(70))
    for start in range(0, 70, 16):
        assert set(grouped[start:start + 16]) == set(plain[start:start + 16])
        inside = [lengths[i] for i in grouped[start:start + 16]]
        assert inside == sorted(inside, reverse=True)
    assert grouped == length_grouped_order(lengths, 16, seed=4, grouping="batch")
    assert grouped != length_grouped_order(lengths, 16, seed=5, grouping="batch")


def test_dataset_grouping_puts_the_longest_batch_first_and_the_short_one_last():
    lengths = [random.Random(i).randint(1, 5000) for i in range(1000)]
    order = length_grouped_order(lengths, 16, seed=0, grouping="dataset")
    assert sorted(order) == list(range(1000))
    batches = [order[i:i + 16] for i in range(0, 1000, 16)]
    assert max(lengths) in [lengths[i] for i in batches[0]]
    assert len(batches[-1]) == 1000 % 16
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches[:-1]]
    assert sum(spread) / len(spread) < 0.05 * 5000  # rows of similar length in each batch
    starts = [max(lengths[i] for i in b) for b in batches[1:-1]]
    assert starts != sorted(starts, reverse=True)  # the batches themselves are shuffled


def test_unknown_batching_and_packed_kl_are_refused():
    with pytest.raises(ValueError, match=r"em_training.batching: expected one of padded, causal, packed"):
        EmTrainSettings(batching="flash")
    with pytest.raises(ValueError, match=r"em_training.length_grouping: expected one of none, batch, dataset"):
        EmTrainSettings.from_params({"length_grouping": "sorted"})
    with pytest.raises(ValueError, match="'packed' is for kind sft"):
        EmTrainSettings(kind="kl", batching="packed")
