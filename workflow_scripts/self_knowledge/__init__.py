"""The self-knowledge battery: what each model of the grid says about itself, scored
from its own token probabilities, against how it behaves (docs/methods.md)."""
