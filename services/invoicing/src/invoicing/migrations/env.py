"""Alembic environment of invoicing."""

from invoicing.tables import metadata
from service_runtime.migrations import run_env

run_env(metadata)
