"""voices belong to whoever uploaded them: an owner column, and a clip is one voice per owner

Voices uploaded before this have no owner: operators, admins and viewers still see them, clients
do not (nobody can say whose they were).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 08:30:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

# 0003 left the content hash's unique constraint unnamed: PostgreSQL calls it voice_content_sha256_key,
# SQLite reflects it without a name, so the batch copy gets one from this convention to drop it by.
_NAMES = {"uq": "%(table_name)s_%(column_0_name)s_key"}


def upgrade() -> None:
    with op.batch_alter_table('voice', schema=None, naming_convention=_NAMES) as batch_op:
        batch_op.add_column(sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_voice_owner'), ['owner'], unique=False)
        batch_op.drop_constraint('voice_content_sha256_key', type_='unique')
        batch_op.create_unique_constraint('uq_voice_owner_content', ['owner', 'content_sha256'])


def downgrade() -> None:
    with op.batch_alter_table('voice', schema=None) as batch_op:
        batch_op.drop_constraint('uq_voice_owner_content', type_='unique')
        batch_op.drop_index(batch_op.f('ix_voice_owner'))
        batch_op.drop_column('owner')
        batch_op.create_unique_constraint('voice_content_sha256_key', ['content_sha256'])
