"""H3: when EM sets in: behavioural and mechanistic transitions over EM training."""
