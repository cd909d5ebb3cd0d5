"""Re-analysis of the first, script-based study: import of its judge-run files
(`importer`), its own statistical method (`method`), the corrected method (`corrected`),
judge reliability (`reliability`) and the reproduction section (`reproduction`)."""
