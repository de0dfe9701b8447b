"""submissions: how many grading sessions a model submission took (the platform grades
it again when it failed one for its own reasons)

Revision ID: 0014_grading_attempts
Revises: 0013_reproductions
Create Date: 2026-11-30 14:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0014_grading_attempts'
down_revision = '0013_reproductions'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column(
        'submissions',
        sa.Column('grading_attempts', sa.Integer(), server_default='1', nullable=False),
    )


def downgrade():
    # Not batch_alter_table: on SQLite it recreates the table, and the rows that refer to
    # it would go with it.
    op.execute('ALTER TABLE submissions DROP COLUMN grading_attempts')
