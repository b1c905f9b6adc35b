"""Migration support: Alembic as a library (configuration, revision graph, offline SQL), the
online-DDL helpers the revisions call (migration lock, lock timeouts with retries, concurrent
index builds, storage parameters with exact undo), the revisions' manifests (what each creates,
and so what a database at a given revision should hold), the monitoring schema's names and its
latency histogram's fixed bounds, and normalised schema dumps."""
