"""Alembic environment of procountor-sync."""

from procountor_sync.tables import metadata
from service_runtime.migrations import run_env

run_env(metadata)
