"""Names of the H4 tables and figures (cheap to import: read at parse time)."""

TABLES = ("h4_directions", "h4_geometry", "h4_steering", "h4_ablation", "h4_tests")

FIGURES = ("h4_geometry", "h4_steering")
