"""environments: a session's environment digest, the environment images a node holds

Revision ID: 0007_environments
Revises: 0006_trust_levels
Create Date: 2026-11-30 05:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007_environments'
down_revision = '0006_trust_levels'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environment', sa.String(length=64), server_default='', nullable=False))
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('environments', sa.JSON(), server_default='[]', nullable=False))


def downgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('environments')
    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('environment')
