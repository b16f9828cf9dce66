"""device telemetry kept as a time series for charts; jobs indexed by creation and finish time

The console's overview reads a window of jobs (created or finished in it) with one indexed query.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 17:15:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('telemetrysample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_telemetrysample_device_at', 'telemetrysample', ['device_id', 'at'], unique=False)
    op.create_index(op.f('ix_telemetrysample_at'), 'telemetrysample', ['at'], unique=False)
    op.create_index(op.f('ix_job_created_at'), 'job', ['created_at'], unique=False)
    op.create_index(op.f('ix_job_finished_at'), 'job', ['finished_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_job_finished_at'), table_name='job')
    op.drop_index(op.f('ix_job_created_at'), table_name='job')
    op.drop_index(op.f('ix_telemetrysample_at'), table_name='telemetrysample')
    op.drop_index('ix_telemetrysample_device_at', table_name='telemetrysample')
    op.drop_table('telemetrysample')
