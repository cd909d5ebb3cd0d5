"""Persona training from a constitution, after Open Character Training (Maiya et
al.), released adapters, folding, and the persona check: one module per stage."""
