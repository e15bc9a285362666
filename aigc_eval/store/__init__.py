"""The results store: every scored row and its run in one SQL database (SQLite by default,
PostgreSQL when shared), its Alembic migrations, the recorder the scoring stages write through,
and the queries the dashboard and `aigc-eval history` read (docs/store.md has the schema)."""

from aigc_eval.store.recorder import Recorder, RunInfo

__all__ = ["Recorder", "RunInfo"]
