"""The web layer: parse HTTP, call the pipeline, encode what it returns. Nothing else."""
