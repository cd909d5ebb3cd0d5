"""H4: the EM direction in the residual stream - extraction, transfer geometry,
steering and ablation, compared across personas (docs/methods.md, H4)."""
