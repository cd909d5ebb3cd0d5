"""Evaluation questions (`questions`) and sampling of the persona models and their
EM adapters (`sample`)."""
