"""month BRIN indexes: a month close reads only the pages of its month

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 16:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("vouchers", "payees", "einvoice_messages", "signatures", "hour_entries")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(
            f"ix_{table}_month_brin",
            table,
            ["month"],
            schema="metering",
            postgresql_using="brin",
            postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
        )


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_month_brin", table_name=table, schema="metering")
