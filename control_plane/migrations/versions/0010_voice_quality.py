"""voices ranked by quality: each device's engines (tier, voices, measured figures), a job's quality
choice (best | fastest) and who spoke it (device, engine, voice, model version, any fallback)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 11:40:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.add_column(sa.Column('engines', sa.JSON(none_as_null=True), nullable=True))
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default='best'))
        batch_op.add_column(sa.Column('spoken_by', sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_column('spoken_by')
        batch_op.drop_column('quality')
    with op.batch_alter_table('device', schema=None) as batch_op:
        batch_op.drop_column('engines')
