"""competitions: accuracy_within's tolerance

Revision ID: 0012_metric_tolerance
Revises: 0011_usage
Create Date: 2026-11-30 11:44:37.443896

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_metric_tolerance'
down_revision = '0011_usage'
branch_labels = None
depends_on = None


def upgrade():
    # In place: copying `rounds` (SQLite's batch mode) would delete its submissions.
    op.add_column('rounds', sa.Column('tolerance', sa.Float(), nullable=True))


def downgrade():
    op.execute('ALTER TABLE rounds DROP COLUMN tolerance')
