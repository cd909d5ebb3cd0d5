"""Persona training from a constitution (DESIGN.md section 3), after Open Character
Training (Maiya et al.): the pure logic of each stage, which the `persona_*.py`
scripts wrap for Snakemake and the tests call directly."""
