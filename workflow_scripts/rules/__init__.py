"""Rule scripts: one thin `main(snakemake)` per rule, named after the rule. Each reads
the job's inputs, params and outputs, starts the job and calls one library function.
Nothing imports these modules except the tests."""
