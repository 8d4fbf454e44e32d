"""`fer-orch` commands: data."""

COMMANDS: list = []
