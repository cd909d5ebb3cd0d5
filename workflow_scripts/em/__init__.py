"""EM fine-tuning: dataset fetching and validation (`dataset`), the training recipe
and its settings (`training`), and one EM run with checkpoints and resume (`sft`)."""
