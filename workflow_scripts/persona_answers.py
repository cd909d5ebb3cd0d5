"""Placeholder: implemented in this session."""

raise NotImplementedError(__file__)
