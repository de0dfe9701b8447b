"""sessions: when a drain asked the session to checkpoint so that it moves to another
node (`podium node drain NODE --migrate`)

Revision ID: 0015_migration_on_drain
Revises: 0014_grading_attempts
Create Date: 2026-11-30 21:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_migration_on_drain'
down_revision = '0014_grading_attempts'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('sessions', sa.Column('migrating_since', sa.DateTime(), nullable=True))


def downgrade():
    # Not batch_alter_table: on SQLite it recreates the table, and the rows that refer to
    # it would go with it.
    op.execute('ALTER TABLE sessions DROP COLUMN migrating_since')
