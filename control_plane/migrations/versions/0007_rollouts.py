"""model registry and rollouts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 04:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('devicemodel',
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('slot', sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
    sa.Column('previous_version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('pinned_version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('test', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('device_id')
    )
    op.create_table('modelversion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('engine', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('key_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('uploaded_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('model_id', 'version')
    )
    op.create_table('rollout',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('model_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('selector', sa.JSON(), nullable=False),
    sa.Column('plan', sa.JSON(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('phase_started_at', sa.Float(), nullable=True),
    sa.Column('soak_until', sa.Float(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_by', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rollout_state'), 'rollout', ['state'], unique=False)
    op.create_table('rolloutevent',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('detail', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('ts', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_rolloutevent_rollout_id'), 'rolloutevent', ['rollout_id'], unique=False)
    op.create_table('rollouttarget',
    sa.Column('rollout_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('phase', sa.Integer(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('from_version', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('baseline', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('test', sa.JSON(none_as_null=True), nullable=True),
    sa.Column('command_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('sent_at', sa.Float(), nullable=True),
    sa.Column('activated_at', sa.Float(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('rollout_id', 'device_id')
    )
    op.create_index(op.f('ix_rollouttarget_device_id'), 'rollouttarget', ['device_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_rollouttarget_device_id'), table_name='rollouttarget')
    op.drop_table('rollouttarget')
    op.drop_index(op.f('ix_rolloutevent_rollout_id'), table_name='rolloutevent')
    op.drop_table('rolloutevent')
    op.drop_index(op.f('ix_rollout_state'), table_name='rollout')
    op.drop_table('rollout')
    op.drop_table('modelversion')
    op.drop_table('devicemodel')
