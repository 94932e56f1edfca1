"""Alembic environment of metering."""

from metering.tables import metadata
from service_runtime.migrations import run_env

run_env(metadata)
