"""Prefect flows and their command lines. Importing any of them quiets Prefect's traceback for a run that ended
Failed by returning a Failed state (see flows/quiet.py): the worker's engine loads a flow through this package."""

from flows import quiet

quiet.install()
