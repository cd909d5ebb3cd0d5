"""Base models: where they come from, conversion or download, and loading (`loading`)."""
