"""scheduling: job tier and deadline, operator cordon

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 01:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='interactive'))
        batch_op.add_column(sa.Column('deadline_at', sa.Float(), nullable=True))
        batch_op.drop_index('ix_job_queue')
        batch_op.create_index('ix_job_queue', ['state', 'tier', 'priority', 'created_at'], unique=False)
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cordoned', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('cordoned')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('ix_job_queue')
        batch_op.create_index('ix_job_queue', ['state', 'priority', 'created_at'], unique=False)
        batch_op.drop_column('deadline_at')
        batch_op.drop_column('tier')
