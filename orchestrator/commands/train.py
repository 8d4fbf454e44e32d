"""`fer-orch` commands: train."""

COMMANDS: list = []
