"""one refund list (B-06): procountor-sync's own refund list is gone; invoicing keeps the refunds

procountor-sync only notes each refund in Procountor (its `refund_note:<refund_id>` delivery).
Before this revision runs where refunds were recorded, any `open` refund of the dropped table
whose id starts with `CN-` (made up here for credit notes of paid invoices, unknown to invoicing)
is carried over to invoicing's list by hand; the others are in invoicing's list already.

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
    op.drop_table("refunds", schema="procountor_sync")


def downgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("payer_business_id", sa.String(length=9), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column("procountor_invoice_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False, comment="open or paid."),
        sa.Column("noted_in_procountor", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("paid_by", sa.String(length=200), nullable=True),
        sa.Column("paid_note", sa.String(length=500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("refund_id", name=op.f("pk_refunds")),
        schema="procountor_sync",
    )
