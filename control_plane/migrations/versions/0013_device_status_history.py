"""a device's status history (offline spells, drains, cordons and why)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 18:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devicestatuschange',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('cordoned', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_devicestatuschange_device_at', 'devicestatuschange', ['device_id', 'at'], unique=False)
    op.create_index(op.f('ix_devicestatuschange_at'), 'devicestatuschange', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_devicestatuschange_at'), table_name='devicestatuschange')
    op.drop_index('ix_devicestatuschange_device_at', table_name='devicestatuschange')
    op.drop_table('devicestatuschange')
