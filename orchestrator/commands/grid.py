"""`fer-orch` commands: grid."""

COMMANDS: list = []
