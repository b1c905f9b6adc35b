"""Statistics: PostgreSQL's counters as typed rows (``rows``), the per-version pg_stat_statements
column adapter (``columns``), reading them live (``collect``), storing and loading labelled
snapshots and windows (``snapshots``), deltas between two snapshots (``deltas``) and the figures of
a window (``measures``). Nothing here resets statistics."""
