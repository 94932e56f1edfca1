"""billing run: held lines, corrections, credit notes, refunds, run progress

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "invoicing"


def upgrade() -> None:
    # Usage adjustments: which run billed them (as the month's own usage or as a correction).
    op.add_column(
        "usage_adjustments",
        sa.Column(
            "billed_in_period",
            sa.String(length=7),
            nullable=True,
            comment="Billing period of the run that billed it: as the month's own usage or as a correction.",
        ),
        schema=S,
    )
    op.add_column(
        "usage_adjustments", sa.Column("received_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.create_index(
        "ix_usage_adjustments_unbilled",
        "usage_adjustments",
        ["month"],
        unique=False,
        schema=S,
        postgresql_where=sa.text("billed_in_period IS NULL"),
    )

    # Billing runs: one row per billing period, progress and counts.
    for name in ("held", "zero", "nothing_to_bill", "payers_done", "attempts"):
        op.add_column(
            "billing_runs", sa.Column(name, sa.Integer(), server_default="0", nullable=False), schema=S
        )
    op.add_column(
        "billing_runs",
        sa.Column("last_run_date", sa.Date(), nullable=True, comment="Invoice date of the latest attempt."),
        schema=S,
    )
    op.add_column(
        "billing_runs", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True), schema=S
    )
    op.alter_column(
        "billing_runs",
        "status",
        type_=sa.String(length=30),
        existing_type=sa.String(length=20),
        existing_nullable=False,
        comment="running, completed, completed_with_failures.",
        existing_comment=None,
        schema=S,
    )
    op.create_table_comment(
        "billing_runs",
        "One row per billing period (run_id run-YYYY-MM); every attempt updates it.",
        existing_comment=None,
        schema=S,
    )

    # Invoices: payment, credit and delivery state.
    op.add_column(
        "invoices",
        sa.Column("paid_amount", sa.Numeric(precision=14, scale=2), server_default="0", nullable=False),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column("credited_net", sa.Numeric(precision=14, scale=2), server_default="0", nullable=False),
        schema=S,
    )
    op.add_column(
        "invoices",
        sa.Column("credited_gross", sa.Numeric(precision=14, scale=2), server_default="0", nullable=False),
        schema=S,
    )
    op.add_column(
        "invoices", sa.Column("procountor_invoice_id", sa.String(length=64), nullable=True), schema=S
    )
    op.add_column(
        "invoices",
        sa.Column(
            "delivery_status", sa.String(length=30), nullable=True, comment="From procountor-sync (I-01)."
        ),
        schema=S,
    )
    op.add_column("invoices", sa.Column("delivery_error", sa.Text(), nullable=True), schema=S)
    op.add_column("invoices", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True), schema=S)
    op.execute("UPDATE invoicing.invoices SET status = 'open' WHERE status = 'issued'")
    op.create_index(
        "ix_invoices_procountor_invoice_id",
        "invoices",
        ["procountor_invoice_id"],
        unique=False,
        schema=S,
        postgresql_where=sa.text("procountor_invoice_id IS NOT NULL"),
    )
    op.create_index("ix_invoices_billing_period", "invoices", ["billing_period"], unique=False, schema=S)
    # JSON, not JSONB: kept exactly as published (key order too), and half the cost to write.
    op.alter_column(
        "invoices",
        "document",
        type_=postgresql.JSON(astext_type=sa.Text()),
        existing_type=postgresql.JSONB(astext_type=sa.Text()),
        postgresql_using="document::text::json",
        existing_nullable=False,
        existing_comment="The issued invoice as published (InvoiceIssuedV1).",
        schema=S,
    )

    op.create_table(
        "billing_outcomes",
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False, comment="issue, hold, zero or nothing."),
        sa.Column("reason", sa.String(length=30), nullable=True, comment="The B-15 reason."),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("net", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payer_id", "billing_period", name=op.f("pk_billing_outcomes")),
        schema=S,
        comment="Each (payer, billing period) is decided exactly once, whatever reruns or concurrent runs do.",
    )
    # Invoices issued before this revision count as decided.
    op.execute(
        "INSERT INTO invoicing.billing_outcomes (payer_id, billing_period, outcome, reason, invoice_id, net, run_id, decided_at)"
        " SELECT payer_id, billing_period, 'issue', NULL, invoice_id, total_net, run_id, created_at FROM invoicing.invoices"
    )
    op.create_table(
        "billed_environment_months",
        sa.Column("environment_id", sa.String(length=64), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.PrimaryKeyConstraint("environment_id", "month", name=op.f("pk_billed_environment_months")),
        schema=S,
    )
    op.create_table(
        "held_lines",
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("billing_period", sa.String(length=7), nullable=False, comment="The run that held them."),
        sa.Column(
            "lines",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="InvoiceLine objects (without line_no).",
        ),
        sa.Column("net", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_in_period", sa.String(length=7), nullable=True),
        sa.Column(
            "released_invoice_id",
            sa.String(length=64),
            nullable=True,
            comment="NULL with a period: settled at zero.",
        ),
        sa.PrimaryKeyConstraint("payer_id", "billing_period", name=op.f("pk_held_lines")),
        schema=S,
    )
    op.create_index(
        "ix_held_lines_unreleased",
        "held_lines",
        ["payer_id"],
        unique=False,
        schema=S,
        postgresql_where=sa.text("released_in_period IS NULL"),
    )
    op.create_table(
        "billing_failures",
        sa.Column("billing_period", sa.String(length=7), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("billing_period", "payer_id", name=op.f("pk_billing_failures")),
        schema=S,
    )
    op.create_table(
        "partner_tiers",
        sa.Column("firm_id", sa.String(length=64), nullable=False),
        sa.Column("effective_month", sa.String(length=7), nullable=False),
        sa.Column("tier", sa.String(length=20), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("firm_id", "effective_month", name=op.f("pk_partner_tiers")),
        schema=S,
    )
    op.create_table(
        "credit_notes",
        sa.Column("credit_note_id", sa.String(length=64), nullable=False),
        sa.Column("credit_note_number", sa.BigInteger(), nullable=False, comment="Same series as invoices."),
        sa.Column("reference_number", sa.String(length=20), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("credit_date", sa.Date(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("total_net", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("total_vat", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("total_gross", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True, comment="Client idempotency key."),
        sa.Column(
            "document",
            postgresql.JSON(astext_type=sa.Text()),
            nullable=False,
            comment="The credit note as published (CreditNoteIssuedV1).",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("credit_note_id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("credit_note_number", name=op.f("uq_credit_notes_credit_note_number")),
        sa.UniqueConstraint("reference_number", name=op.f("uq_credit_notes_reference_number")),
        sa.UniqueConstraint("request_id", name=op.f("uq_credit_notes_request_id")),
        schema=S,
    )
    op.create_index(
        op.f("ix_invoicing_credit_notes_invoice_id"), "credit_notes", ["invoice_id"], unique=False, schema=S
    )
    op.create_index(
        op.f("ix_invoicing_credit_notes_payer_id"), "credit_notes", ["payer_id"], unique=False, schema=S
    )
    op.create_table(
        "payments",
        sa.Column("procountor_payment_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("payer_business_id", sa.String(length=9), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column(
            "allocations",
            postgresql.JSONB(astext_type=sa.Text()),
            nullable=False,
            comment="[{invoice_id, amount}] applied to open invoices.",
        ),
        sa.Column("refunded", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("procountor_payment_id", name=op.f("pk_payments")),
        schema=S,
    )
    op.create_index(
        op.f("ix_invoicing_payments_payer_business_id"),
        "payments",
        ["payer_business_id"],
        unique=False,
        schema=S,
    )
    op.create_table(
        "refunds",
        sa.Column("refund_id", sa.String(length=64), nullable=False),
        sa.Column("payer_id", sa.String(length=64), nullable=False),
        sa.Column("payer_business_id", sa.String(length=9), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("payment_date", sa.Date(), nullable=False),
        sa.Column("payment_event_id", sa.Uuid(), nullable=False),
        sa.Column("procountor_payment_id", sa.String(length=64), nullable=False),
        sa.Column("procountor_invoice_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="to_refund", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("refund_id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("payment_event_id", name=op.f("uq_refunds_payment_event_id")),
        schema=S,
    )
    op.create_index(op.f("ix_invoicing_refunds_payer_id"), "refunds", ["payer_id"], unique=False, schema=S)
    op.create_table(
        "due_date_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=False),
        sa.Column("old_due_date", sa.Date(), nullable=True),
        sa.Column("new_due_date", sa.Date(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False, comment="accepted or refused."),
        sa.Column("reason", sa.Text(), nullable=False, comment="The requester's reason."),
        sa.Column("refusal", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column("requested_by", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False, comment="http or kafka."),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_due_date_changes")),
        sa.UniqueConstraint("event_id", name=op.f("uq_due_date_changes_event_id")),
        schema=S,
    )
    op.create_index(
        op.f("ix_invoicing_due_date_changes_invoice_id"),
        "due_date_changes",
        ["invoice_id"],
        unique=False,
        schema=S,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_invoicing_due_date_changes_invoice_id"), table_name="due_date_changes", schema=S)
    op.drop_table("due_date_changes", schema=S)
    op.drop_index(op.f("ix_invoicing_refunds_payer_id"), table_name="refunds", schema=S)
    op.drop_table("refunds", schema=S)
    op.drop_index(op.f("ix_invoicing_payments_payer_business_id"), table_name="payments", schema=S)
    op.drop_table("payments", schema=S)
    op.drop_index(op.f("ix_invoicing_credit_notes_payer_id"), table_name="credit_notes", schema=S)
    op.drop_index(op.f("ix_invoicing_credit_notes_invoice_id"), table_name="credit_notes", schema=S)
    op.drop_table("credit_notes", schema=S)
    op.drop_table("partner_tiers", schema=S)
    op.drop_table("billing_failures", schema=S)
    op.drop_index("ix_held_lines_unreleased", table_name="held_lines", schema=S)
    op.drop_table("held_lines", schema=S)
    op.drop_table("billed_environment_months", schema=S)
    op.drop_table("billing_outcomes", schema=S)
    op.alter_column(
        "invoices",
        "document",
        type_=postgresql.JSONB(astext_type=sa.Text()),
        existing_type=postgresql.JSON(astext_type=sa.Text()),
        postgresql_using="document::jsonb",
        existing_nullable=False,
        existing_comment="The issued invoice as published (InvoiceIssuedV1).",
        schema=S,
    )
    op.drop_index("ix_invoices_billing_period", table_name="invoices", schema=S)
    op.drop_index("ix_invoices_procountor_invoice_id", table_name="invoices", schema=S)
    op.execute("UPDATE invoicing.invoices SET status = 'issued' WHERE status = 'open'")
    for name in (
        "updated_at",
        "delivery_error",
        "delivery_status",
        "procountor_invoice_id",
        "credited_gross",
        "credited_net",
        "paid_amount",
    ):
        op.drop_column("invoices", name, schema=S)
    op.alter_column(
        "billing_runs",
        "status",
        type_=sa.String(length=20),
        existing_type=sa.String(length=30),
        existing_nullable=False,
        comment=None,
        existing_comment="running, completed, completed_with_failures.",
        schema=S,
    )
    op.drop_table_comment(
        "billing_runs",
        existing_comment="One row per billing period (run_id run-YYYY-MM); every attempt updates it.",
        schema=S,
    )
    for name in ("updated_at", "last_run_date", "attempts", "payers_done", "nothing_to_bill", "zero", "held"):
        op.drop_column("billing_runs", name, schema=S)
    op.drop_index("ix_usage_adjustments_unbilled", table_name="usage_adjustments", schema=S)
    op.drop_column("usage_adjustments", "received_at", schema=S)
    op.drop_column("usage_adjustments", "billed_in_period", schema=S)
