"""scheduling: credits, session kind and GPU models, node locality

Revision ID: 0002_scheduling
Revises: 0001_initial
Create Date: 2026-11-26 16:08:46.578234

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0002_scheduling'
down_revision = '0001_initial'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('images', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('datasets', sa.JSON(), server_default='[]', nullable=False))

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), server_default='training', nullable=False))
        batch_op.add_column(sa.Column('gpu_models', sa.String(length=256), server_default='', nullable=False))

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credit_gpu_hours', sa.Double(), server_default='100', nullable=False))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('credit_gpu_hours')

    with op.batch_alter_table('sessions', schema=None) as batch_op:
        batch_op.drop_column('gpu_models')
        batch_op.drop_column('kind')

    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_column('datasets')
        batch_op.drop_column('images')

