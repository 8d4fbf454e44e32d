"""Ray + MLflow + click: the only package that imports ray or mlflow."""
