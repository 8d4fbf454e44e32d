"""Registry entries: one module per entry, imported on first lookup."""
