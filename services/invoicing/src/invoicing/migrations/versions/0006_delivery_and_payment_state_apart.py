"""delivery state and payment state apart: Procountor's payment state gets columns of its own (I-01, I-03)

Until now `delivery_status` held both procountor-sync's delivery reports and Procountor's payment
states. The payment states move to `payment_status`; each state remembers its report's time so an
older report never overwrites a newer one (`receivables.domain.supersedes`).

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

S = "invoicing"
PAYMENT_STATES = "('partly_paid', 'paid', 'invalidated')"


def upgrade() -> None:
    op.add_column(
        "invoices",
        sa.Column("delivery_status_at", sa.DateTime(timezone=True), nullable=True, comment="The report's own time."),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column(
            "payment_status",
            sa.String(20),
            nullable=True,
            comment="Procountor's payment state (I-03): open, partly_paid, paid, invalidated.",
        ),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column(
            "procountor_paid_amount", sa.Numeric(14, 2), nullable=True, comment="Settled, as Procountor says."
        ),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column(
            "procountor_open_amount", sa.Numeric(14, 2), nullable=True, comment="Open, as Procountor says."
        ),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column("payment_status_at", sa.DateTime(timezone=True), nullable=True, comment="The report's own time."),
        schema=S,
    )
    op.alter_column(
        "invoices",
        "delivery_status",
        comment="procountor-sync's delivery report (I-01): awaiting_approval, sent, failed_retrying, failed.",
        existing_type=sa.String(30),
        existing_nullable=True,
        schema=S,
    )
    # A payment state was only ever reported for an invoice Procountor had and had sent: its delivery
    # state, which the payment state overwrote, was `sent`. The amounts and the times were not kept:
    # they stay empty, and the next report of each kind is taken whatever its time.
    op.execute(
        f"UPDATE {S}.invoices SET payment_status = delivery_status, delivery_status = 'sent', "  # noqa: S608
        f"delivery_error = NULL WHERE delivery_status IN {PAYMENT_STATES}"
    )


def downgrade() -> None:
    op.execute(
        f"UPDATE {S}.invoices SET delivery_status = payment_status "  # noqa: S608
        f"WHERE payment_status IN {PAYMENT_STATES}"
    )
    op.alter_column(
        "invoices",
        "delivery_status",
        comment="From procountor-sync (I-01).",
        existing_type=sa.String(30),
        existing_nullable=True,
        schema=S,
    )
    for column in (
        "payment_status_at",
        "procountor_open_amount",
        "procountor_paid_amount",
        "payment_status",
        "delivery_status_at",
    ):
        op.drop_column("invoices", column, schema=S)
