"""device records: what devices did on their own, replayed from their journals

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devicerecord',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('record', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.Column('body', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('received_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('devicerecord', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_devicerecord_device_id'), ['device_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('devicerecord', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_devicerecord_device_id'))
    op.drop_table('devicerecord')
