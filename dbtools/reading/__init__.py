"""Reading the server: PostgreSQL's statistics as typed rows, read live, never reset.

``rows`` holds the typed rows (a snapshot header, pg_stat_statements entries, tables, indexes,
the database) whose field names are the monitoring tables' columns; ``columns`` is the one
adapter for pg_stat_statements' versions (1.8 to 1.12); ``live`` reads a database's statistics
with a fixed number of queries (``read_live`` for the report's live statistics, ``read_sample``
for a sample the store keeps, ``probe_reading`` for doctor).
"""
