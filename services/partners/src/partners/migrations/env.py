"""Alembic environment of partners."""

from partners.tables import metadata
from service_runtime.migrations import run_env

run_env(metadata)
