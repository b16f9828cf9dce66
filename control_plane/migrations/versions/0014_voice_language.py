"""the language a prompt voice's clip speaks

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 21:20:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('voice', sa.Column('language', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True))


def downgrade() -> None:
    op.drop_column('voice', 'language')
