"""The first schema: runs and their scored rows.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("input_file", sa.Text),
        sa.Column("input_hash", sa.String(64)),
        sa.Column("generator_version", sa.Text, nullable=False, server_default=""),
        sa.Column("tool_version", sa.String(32)),
        sa.Column("metric_set", sa.Text),
        sa.Column("calibration_hash", sa.String(64)),
        sa.Column("machine", sa.Text),
    )
    op.create_table(
        "scores",
        sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.run_id"), primary_key=True),
        sa.Column("image_id", sa.Text, primary_key=True),
        sa.Column("category", sa.Text, nullable=False, server_default=""),
        sa.Column("generator_version", sa.Text, nullable=False, server_default=""),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("scored_day", sa.Date, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("total_score", sa.Float),
        sa.Column("clip_score", sa.Float),
        sa.Column("product_issues", sa.Text, nullable=False, server_default=""),
        sa.Column("regenerate", sa.Text, nullable=False, server_default=""),
        sa.Column("image_url", sa.Text),
        sa.Column("prompt", sa.Text),
        sa.Column("metrics", sa.JSON),
    )
    op.create_index("ix_scores_group", "scores", ["scored_day", "category", "generator_version"])


def downgrade() -> None:
    op.drop_table("scores")
    op.drop_table("runs")
