"""the control-plane replicas: which one leads, where each is reached, and the leader's term

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 21:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('replica',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
    sa.Column('leading', sa.Boolean(), nullable=False),
    sa.Column('seen_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_replica_seen_at'), 'replica', ['seen_at'], unique=False)
    op.create_table('leaderterm',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('epoch', sa.Integer(), nullable=False),
    sa.Column('replica', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('since', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('leaderterm')
    op.drop_index(op.f('ix_replica_seen_at'), table_name='replica')
    op.drop_table('replica')
