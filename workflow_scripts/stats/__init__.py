"""Statistics of the judged answers: the answers table, cluster bootstrap, descriptive
estimates, comparisons, tables, figures and the results report."""
