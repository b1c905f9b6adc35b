"""Migration support: Alembic as a library (configuration, revision graph, offline SQL), the
online-DDL helpers the revisions call (migration lock, lock timeouts with retries, concurrent
index builds, storage parameters with exact undo), the declarations of what the revisions create,
and normalised schema dumps."""
