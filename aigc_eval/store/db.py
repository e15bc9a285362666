"""Engines for the store and its migrations, run programmatically from the package's own
Alembic scripts (migrations/), so an installed package upgrades any store it opens."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text

from aigc_eval.store.schema import resolve_url

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 726_400_261  # pg_advisory_xact_lock key: one upgrader at a time per database
CONNECT_TIMEOUT_S = 5  # a store that does not answer costs a spool line, not a stalled run


def make_engine(url: str | Path | None) -> Engine:
    """An engine for --store (see schema.resolve_url); SQLite in WAL mode with a 30 s busy wait."""
    resolved = resolve_url(url)
    if resolved.startswith("sqlite"):
        path = resolved[len("sqlite:///"):]
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(resolved, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    args = {"connect_timeout": CONNECT_TIMEOUT_S} if resolved.startswith("postgresql") else {}
    return create_engine(resolved, connect_args=args, pool_pre_ping=True)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the store to `revision` (the latest by default); a no-op when it is there already.
    Concurrent openers on PostgreSQL wait for each other on an advisory lock."""
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
