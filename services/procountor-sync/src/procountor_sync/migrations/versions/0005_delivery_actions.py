"""delivery actions: every operator's requeue and cancel, who (from the token), when and why (issue 12)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "procountor_sync"


def upgrade() -> None:
    op.create_table(
        "delivery_actions",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("delivery_id", sa.String(length=160), nullable=False, comment="<kind>:<subject id>"),
        sa.Column("action", sa.String(length=20), nullable=False, comment="requeue or cancel."),
        sa.Column(
            "actor",
            sa.String(length=200),
            nullable=False,
            comment="The caller: the subject of the operator's token.",
        ),
        sa.Column("reason", sa.Text(), nullable=True, comment="Why, as the operator gave it (optional)."),
        sa.Column(
            "status_after",
            sa.String(length=20),
            nullable=False,
            comment="The delivery's status after the action.",
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_actions")),
        schema=S,
    )
    op.create_index(
        "ix_delivery_actions_delivery_id", "delivery_actions", ["delivery_id", "id"], unique=False, schema=S
    )
    # The history starts here: the last operator of each delivery before it is kept in
    # `deliveries.changed_by`, without a time or a reason, and is not made up into an action.


def downgrade() -> None:
    op.drop_index("ix_delivery_actions_delivery_id", table_name="delivery_actions", schema=S)
    op.drop_table("delivery_actions", schema=S)
