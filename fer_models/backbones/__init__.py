"""Registry entries: one module per backbone family, imported on first lookup."""
