"""parked outbox rows; dead letters with size, hash, truncation and status (issue 8)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from service_runtime.migrations import add_parking_and_replay_columns, drop_parking_and_replay_columns

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_parking_and_replay_columns("invoicing")


def downgrade() -> None:
    drop_parking_and_replay_columns("invoicing")
