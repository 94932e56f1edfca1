"""one refund list (B-06): credit notes' refunds, who marked a refund paid back and when

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column(
        "refunds",
        "procountor_payment_id",
        existing_type=sa.String(64),
        nullable=True,
        comment="None for a credit note's refund.",
        schema="invoicing",
    )
    op.add_column(
        "refunds",
        sa.Column("credit_note_id", sa.String(64), nullable=True, comment="The credit note it returns, if any."),
        schema="invoicing",
    )
    op.add_column("refunds", sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True), schema="invoicing")
    op.add_column(
        "refunds",
        sa.Column("paid_by", sa.String(200), nullable=True, comment="Token subject of who marked it paid back."),
        schema="invoicing",
    )
    op.add_column(
        "refunds",
        sa.Column("paid_note", sa.Text(), nullable=True, comment="e.g. the bank transfer's archive id."),
        schema="invoicing",
    )


def downgrade() -> None:
    op.drop_column("refunds", "paid_note", schema="invoicing")
    op.drop_column("refunds", "paid_by", schema="invoicing")
    op.drop_column("refunds", "paid_at", schema="invoicing")
    op.drop_column("refunds", "credit_note_id", schema="invoicing")
    op.execute("DELETE FROM invoicing.refunds WHERE procountor_payment_id IS NULL")
    op.alter_column(
        "refunds",
        "procountor_payment_id",
        existing_type=sa.String(64),
        nullable=False,
        comment=None,
        existing_comment="None for a credit note's refund.",
        schema="invoicing",
    )
