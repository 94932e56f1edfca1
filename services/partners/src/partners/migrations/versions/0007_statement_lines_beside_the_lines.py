"""the statement of each commission line beside it (a narrow table) and the pending lines in their own: making a month's statements rewrites no line

Revision ID: 0007
Revises: 0006

A line is never changed now (the trigger refuses any update or delete); the lines already on
statements keep them (copied into commission_line_statements), the others become pending.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFUSE = "EXECUTE FUNCTION partners.refuse_change_of_published()"


def upgrade() -> None:
    op.create_table(
        "commission_lines_pending",
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("month", "partner_id", "document_id", name=op.f("pk_commission_lines_pending")),
        schema="partners",
        comment="Lines waiting for a statement; a row is deleted when its line goes on one.",
    )
    op.create_table(
        "commission_line_statements",
        sa.Column("partner_id", sa.String(length=64), nullable=False),
        sa.Column("statement_id", sa.String(length=100), nullable=False),
        sa.Column("document_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint(
            "partner_id", "statement_id", "document_id", name=op.f("pk_commission_line_statements")
        ),
        schema="partners",
        comment="Immutable (trigger commission_line_statements_immutable).",
    )
    op.execute(
        "INSERT INTO partners.commission_lines_pending (month, partner_id, document_id) "
        "SELECT month, partner_id, document_id FROM partners.commission_lines WHERE statement_id IS NULL"
    )
    op.execute(
        "INSERT INTO partners.commission_line_statements (partner_id, statement_id, document_id) "
        "SELECT partner_id, statement_id, document_id FROM partners.commission_lines WHERE statement_id IS NOT NULL"
    )
    op.execute("DROP TRIGGER commission_lines_immutable ON partners.commission_lines")
    op.drop_index("ix_partners_commission_lines_statement_id", table_name="commission_lines", schema="partners")
    op.drop_index(
        "ix_partners_commission_lines_pending",
        table_name="commission_lines",
        schema="partners",
        postgresql_where=sa.text("statement_id IS NULL"),
    )
    op.drop_column("commission_lines", "statement_id", schema="partners")
    op.create_table_comment(
        "commission_lines",
        "Immutable (trigger commission_lines_immutable); its statement is in commission_line_statements.",
        existing_comment="Immutable once on a statement (trigger commission_lines_immutable).",
        schema="partners",
    )
    op.execute(
        "CREATE TRIGGER commission_lines_immutable BEFORE UPDATE OR DELETE ON partners.commission_lines "
        f"FOR EACH ROW {_REFUSE}"
    )
    op.execute(
        "CREATE TRIGGER commission_line_statements_immutable BEFORE UPDATE OR DELETE "
        f"ON partners.commission_line_statements FOR EACH ROW {_REFUSE}"
    )
    op.execute(
        "CREATE TRIGGER commission_line_statements_no_truncate BEFORE TRUNCATE "
        f"ON partners.commission_line_statements FOR EACH STATEMENT {_REFUSE}"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER commission_lines_immutable ON partners.commission_lines")
    op.add_column(
        "commission_lines", sa.Column("statement_id", sa.String(length=100), nullable=True), schema="partners"
    )
    op.execute(
        "UPDATE partners.commission_lines AS l SET statement_id = s.statement_id "
        "FROM partners.commission_line_statements AS s "
        "WHERE s.partner_id = l.partner_id AND s.document_id = l.document_id"
    )
    op.create_index(
        "ix_partners_commission_lines_pending",
        "commission_lines",
        ["month"],
        unique=False,
        schema="partners",
        postgresql_where=sa.text("statement_id IS NULL"),
    )
    op.create_index(
        "ix_partners_commission_lines_statement_id", "commission_lines", ["statement_id"], schema="partners"
    )
    op.create_table_comment(
        "commission_lines",
        "Immutable once on a statement (trigger commission_lines_immutable).",
        existing_comment="Immutable (trigger commission_lines_immutable); its statement is in commission_line_statements.",
        schema="partners",
    )
    op.execute(
        "CREATE TRIGGER commission_lines_immutable BEFORE UPDATE OR DELETE ON partners.commission_lines "
        f"FOR EACH ROW WHEN (OLD.statement_id IS NOT NULL) {_REFUSE}"
    )
    op.drop_table("commission_line_statements", schema="partners")
    op.drop_table("commission_lines_pending", schema="partners")
