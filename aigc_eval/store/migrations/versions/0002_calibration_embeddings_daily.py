"""p_accept and the CLIP embedding per row; daily aggregates for the overview, filled from the
rows already stored.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

def _key() -> list[sa.Column]:
    return [
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("category", sa.Text, primary_key=True),
        sa.Column("generator_version", sa.Text, primary_key=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("scores") as batch:
        batch.add_column(sa.Column("p_accept", sa.Float))
        batch.add_column(sa.Column("embedding", sa.LargeBinary))
    op.create_index("ix_scores_day_total", "scores", ["scored_day", "total_score"])
    counts = ["n_rows", "n_ok", "n_total"]
    op.create_table(
        "score_daily", *_key(),
        *[sa.Column(name, sa.Integer, nullable=False) for name in counts],
        sa.Column("sum_total", sa.Float, nullable=False), sa.Column("sumsq_total", sa.Float, nullable=False),
        sa.Column("n_p_accept", sa.Integer, nullable=False),
        sa.Column("sum_p_accept", sa.Float, nullable=False), sa.Column("sumsq_p_accept", sa.Float, nullable=False),
        sa.Column("n_clip", sa.Integer, nullable=False),
        sa.Column("sum_clip", sa.Float, nullable=False), sa.Column("sumsq_clip", sa.Float, nullable=False),
        sa.Column("n_regenerate", sa.Integer, nullable=False),
        sa.Column("n_embedding", sa.Integer, nullable=False),
    )
    op.create_table(
        "score_daily_issue", *_key(),
        sa.Column("issue", sa.String(64), primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
    )
    from aigc_eval.store.aggregates import rebuild_all  # the same code keeps them current

    rebuild_all(op.get_bind())


def downgrade() -> None:
    op.drop_table("score_daily_issue")
    op.drop_table("score_daily")
    op.drop_index("ix_scores_day_total", "scores")
    with op.batch_alter_table("scores") as batch:
        batch.drop_column("embedding")
        batch.drop_column("p_accept")
