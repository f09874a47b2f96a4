"""Everything that writes to MLflow during a run: its life (run.py), per-epoch callbacks,
end-of-run figures and the logged and registered models."""
