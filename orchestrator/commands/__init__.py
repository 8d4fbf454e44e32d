"""Click commands, one module per area; cli.py adds each module's COMMANDS to `fer-orch`.

Modules import ray, mlflow and torch inside the command functions, so `fer-orch --help`
stays fast.
"""
