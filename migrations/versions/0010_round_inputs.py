"""competitions: a round may publish its test inputs, and says what submissions it takes

Revision ID: 0010_round_inputs
Revises: 0009_summary_blocks
Create Date: 2026-11-30 08:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_round_inputs'
down_revision = '0009_summary_blocks'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('publish_inputs', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('accepts', sa.String(length=8), server_default='both', nullable=False))


def downgrade():
    with op.batch_alter_table('rounds', schema=None) as batch_op:
        batch_op.drop_column('accepts')
        batch_op.drop_column('publish_inputs')
