"""contract lifecycle: effective-dated terms, change requests, approvals, price lists from the API

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('contract_terms',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
    sa.Column('contract_id', sa.String(length=64), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=True, comment='First day of the month; NULL = from the start.'),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('change_id', sa.BigInteger(), nullable=True, comment='The contract_changes row that made it.'),
    sa.Column('package', sa.String(length=20), nullable=True),
    sa.Column('sets_accounting_firm', sa.Boolean(), nullable=False),
    sa.Column('accounting_firm_id', sa.String(length=64), nullable=True),
    sa.Column('accounting_firm_business_id', sa.String(length=9), nullable=True),
    sa.Column('payer_kind', sa.String(length=20), nullable=True),
    sa.Column('payer_id', sa.String(length=64), nullable=True),
    sa.Column('applied', sa.Boolean(), nullable=False, comment='Reflected in the contracts row (in effect now or before).'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contract_terms')),
    schema='invoicing'
    )
    op.create_index('ix_contract_terms_contract', 'contract_terms', ['contract_id', 'effective_from'], unique=False, schema='invoicing')
    op.create_index('ix_contract_terms_pending', 'contract_terms', ['effective_from'], unique=False, schema='invoicing', postgresql_where=sa.text('NOT applied'))
    op.create_index('uq_contract_terms_signed', 'contract_terms', ['contract_id'], unique=True, schema='invoicing', postgresql_where=sa.text('effective_from IS NULL'))
    op.create_table('tallennus_firm_changes',
    sa.Column('contract_id', sa.String(length=64), nullable=False, comment='At most one pending change per contract.'),
    sa.Column('old_accounting_firm_id', sa.String(length=64), nullable=False),
    sa.Column('new_accounting_firm_id', sa.String(length=64), nullable=False),
    sa.Column('old_approval', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('new_approval', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('contract_id', name=op.f('pk_tallennus_firm_changes')),
    schema='invoicing'
    )
    op.add_column('contract_changes', sa.Column('outcome', sa.String(length=20), server_default='accepted', nullable=False, comment='accepted, pending, refused.'), schema='invoicing')
    op.add_column('contract_changes', sa.Column('rule', sa.String(length=8), nullable=True, comment='SPEC rule of a refusal (B-25 …).'), schema='invoicing')
    op.add_column('contract_changes', sa.Column('reason', sa.Text(), nullable=True, comment="Why: the refusal's reason or the requester's."), schema='invoicing')
    op.add_column('contract_changes', sa.Column('effective_from', sa.Date(), nullable=True, comment='First billed month it affects (B-26).'), schema='invoicing')
    op.add_column('contract_changes', sa.Column('source', sa.String(length=20), nullable=True, comment='http, kafka or procountor.'), schema='invoicing')
    op.add_column('contract_changes', sa.Column('event_id', sa.Uuid(), nullable=True, comment="The command's event id."), schema='invoicing')
    op.add_column('contracts', sa.Column('notice_given_on', sa.Date(), nullable=True), schema='invoicing')
    op.add_column('contracts', sa.Column('termination_reason', sa.Text(), nullable=True), schema='invoicing')
    op.add_column('contracts', sa.Column('data_retained_until', sa.Date(), nullable=True), schema='invoicing')
    op.add_column('contracts', sa.Column('einvoice_address_ends_on', sa.Date(), nullable=True), schema='invoicing')
    op.add_column('contracts', sa.Column('predecessor_contract_id', sa.String(length=64), nullable=True), schema='invoicing')
    op.add_column('contracts', sa.Column('successor_contract_id', sa.String(length=64), nullable=True), schema='invoicing')
    op.create_table_comment(
        'contracts',
        "Each contract's current state; package, firm and payer per month are in contract_terms (B-26).",
        existing_comment=None,
        schema='invoicing'
    )
    # Contracts signed before this revision keep their terms from their start.
    op.execute(
        "INSERT INTO invoicing.contract_terms (contract_id, effective_from, requested_at, package,"
        " sets_accounting_firm, accounting_firm_id, accounting_firm_business_id, payer_kind, payer_id, applied)"
        " SELECT contract_id, NULL, created_at, package, true, accounting_firm_id,"
        " accounting_firm_business_id, payer_kind, payer_id, true FROM invoicing.contracts"
    )
    # The single-row price book becomes one row per effective-dated price list (B-07).
    op.drop_table('price_lists', schema='invoicing')
    op.create_table('price_lists',
    sa.Column('price_list_id', sa.String(length=64), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=False),
    sa.Column('valid_to', sa.Date(), nullable=True),
    sa.Column('is_sample', sa.Boolean(), nullable=False, comment='Made-up prices, refused in production.'),
    sa.Column('document', sa.Text(), nullable=False, comment='The price list as a one-list price book YAML.'),
    sa.Column('source', sa.String(length=20), nullable=False, comment='file or api.'),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('price_list_id', name=op.f('pk_price_lists')),
    schema='invoicing'
    )


def downgrade() -> None:
    op.drop_table('price_lists', schema='invoicing')
    op.create_table('price_lists',
    sa.Column('id', sa.Integer(), nullable=False, comment='Single row: the whole price book as loaded.'),
    sa.Column('document', sa.Text(), nullable=False, comment='The price book YAML exactly as loaded (B-07).'),
    sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_price_lists')),
    schema='invoicing'
    )
    op.drop_table_comment(
        'contracts',
        existing_comment="Each contract's current state; package, firm and payer per month are in contract_terms (B-26).",
        schema='invoicing'
    )
    op.drop_column('contracts', 'successor_contract_id', schema='invoicing')
    op.drop_column('contracts', 'predecessor_contract_id', schema='invoicing')
    op.drop_column('contracts', 'einvoice_address_ends_on', schema='invoicing')
    op.drop_column('contracts', 'data_retained_until', schema='invoicing')
    op.drop_column('contracts', 'termination_reason', schema='invoicing')
    op.drop_column('contracts', 'notice_given_on', schema='invoicing')
    op.drop_column('contract_changes', 'event_id', schema='invoicing')
    op.drop_column('contract_changes', 'source', schema='invoicing')
    op.drop_column('contract_changes', 'effective_from', schema='invoicing')
    op.drop_column('contract_changes', 'reason', schema='invoicing')
    op.drop_column('contract_changes', 'rule', schema='invoicing')
    op.drop_column('contract_changes', 'outcome', schema='invoicing')
    op.drop_table('tallennus_firm_changes', schema='invoicing')
    op.drop_index('uq_contract_terms_signed', table_name='contract_terms', schema='invoicing', postgresql_where=sa.text('effective_from IS NULL'))
    op.drop_index('ix_contract_terms_pending', table_name='contract_terms', schema='invoicing', postgresql_where=sa.text('NOT applied'))
    op.drop_index('ix_contract_terms_contract', table_name='contract_terms', schema='invoicing')
    op.drop_table('contract_terms', schema='invoicing')
