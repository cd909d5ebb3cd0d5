"""Names of the H3 tables (results/final/tables/) and figures (results/final/)."""

TABLES = ("h3_curves", "h3_mechanistic", "h3_transitions", "h3_tests")
FIGURES = ("h3_curves", "h3_transitions")
