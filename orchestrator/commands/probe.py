"""`fer-orch` commands: probe."""

COMMANDS: list = []
