"""Generation engines with one output schema: transformers (CPU and GPU) and vLLM."""
