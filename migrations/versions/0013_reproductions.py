"""reproductions: an organiser's re-run of a model submission's training, graded
against the same round

Revision ID: 0013_reproductions
Revises: 0012_metric_tolerance
Create Date: 2026-11-30 13:45:19.386262

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_reproductions'
down_revision = '0012_metric_tolerance'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reproductions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('submission_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('training_session_id', sa.Integer(), nullable=True),
    sa.Column('grading_session_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('checkpoint', sa.String(length=200), nullable=False),
    sa.Column('checkpoint_digest', sa.String(length=64), nullable=False),
    sa.Column('predictions_digest', sa.String(length=64), nullable=False),
    sa.Column('public_score', sa.Float(), nullable=True),
    sa.Column('private_score', sa.Float(), nullable=True),
    sa.Column('scored_revision', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['grading_session_id'], ['sessions.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['training_session_id'], ['sessions.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('reproductions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reproductions_grading_session_id'), ['grading_session_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reproductions_submission_id'), ['submission_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_reproductions_training_session_id'), ['training_session_id'], unique=False)



def downgrade():
    with op.batch_alter_table('reproductions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reproductions_training_session_id'))
        batch_op.drop_index(batch_op.f('ix_reproductions_submission_id'))
        batch_op.drop_index(batch_op.f('ix_reproductions_grading_session_id'))

    op.drop_table('reproductions')
