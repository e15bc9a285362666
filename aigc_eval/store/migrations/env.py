"""Alembic's environment for the store: always run programmatically (aigc_eval.store.db.upgrade),
on the connection it passes in config.attributes["connection"]."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
