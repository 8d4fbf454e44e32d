"""`fer-orch` commands: explain."""

COMMANDS: list = []
