"""`fer-orch` commands: preprocess."""

COMMANDS: list = []
