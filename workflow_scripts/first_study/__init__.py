"""Re-analysis of the first, script-based study: import of its judge-run files
(`importer`), its own statistical method (`method`), judge reliability
(`reliability`), the persona-effect check (`persona_effect`) and the reproduction
section (`reproduction`), which sets the first study's method beside the workflow's
statistics (stats/) on the same answers."""
