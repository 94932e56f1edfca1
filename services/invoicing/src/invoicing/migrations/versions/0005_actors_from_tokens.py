"""actors from tokens: the system asserting a contract command, who loaded a price list; dead-letter audit (issue 12)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service_runtime.migrations import add_dead_letter_audit, drop_dead_letter_audit

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    add_dead_letter_audit("invoicing")
    op.add_column(
        "contract_changes",
        sa.Column(
            "asserted_by",
            sa.String(200),
            nullable=True,
            comment="Who vouches for the requester: the calling system's token subject, or kafka:<topic>.",
        ),
        schema="invoicing",
    )
    op.add_column(
        "price_lists",
        sa.Column(
            "loaded_by",
            sa.String(200),
            nullable=True,
            comment="The token subject of who loaded it over the API; `configuration` for the file.",
        ),
        schema="invoicing",
    )


def downgrade() -> None:
    op.drop_column("price_lists", "loaded_by", schema="invoicing")
    op.drop_column("contract_changes", "asserted_by", schema="invoicing")
    drop_dead_letter_audit("invoicing")
