"""dead letters: who resolved them, every replay and discard, an index of the pending ones (issue 12)

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from service_runtime.migrations import add_dead_letter_audit, drop_dead_letter_audit

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_dead_letter_audit("procountor_sync")


def downgrade() -> None:
    drop_dead_letter_audit("procountor_sync")
