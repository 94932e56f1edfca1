"""environments by their B-28 successor: a contract state change finds the environments whose count depends on it

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_partners_environments_successor",
        "environments",
        ["successor_contract_id"],
        unique=False,
        schema="partners",
        postgresql_where=sa.text("successor_contract_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_partners_environments_successor",
        table_name="environments",
        schema="partners",
        postgresql_where=sa.text("successor_contract_id IS NOT NULL"),
    )
