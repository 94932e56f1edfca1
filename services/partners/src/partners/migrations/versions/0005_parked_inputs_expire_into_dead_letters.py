"""parked inputs are dead-lettered only when their parking expires: their record, expiry, an index of the waiting

Revision ID: 0005
Revises: 0004

Inputs parked before this revision were dead-lettered when they were parked (the old rule) and
carry no record coordinates: the sweep marks them expired without a second letter.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("parked_inputs", sa.Column("consumer_group", sa.String(length=200), nullable=True), schema="partners")
    op.add_column("parked_inputs", sa.Column("partition", sa.Integer(), nullable=True), schema="partners")
    op.add_column("parked_inputs", sa.Column("offset", sa.BigInteger(), nullable=True), schema="partners")
    op.add_column("parked_inputs", sa.Column("key", sa.LargeBinary(), nullable=True), schema="partners")
    op.add_column(
        "parked_inputs",
        sa.Column(
            "expired_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="Its parking expired with nothing it needs arrived: dead-lettered then, with its reason.",
        ),
        schema="partners",
    )
    op.create_index(
        "ix_partners_parked_inputs_waiting",
        "parked_inputs",
        ["parked_at"],
        unique=False,
        schema="partners",
        postgresql_where=sa.text("applied_at IS NULL AND expired_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_partners_parked_inputs_waiting",
        table_name="parked_inputs",
        schema="partners",
        postgresql_where=sa.text("applied_at IS NULL AND expired_at IS NULL"),
    )
    for column in ("expired_at", "key", "offset", "partition", "consumer_group"):
        op.drop_column("parked_inputs", column, schema="partners")
