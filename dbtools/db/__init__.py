"""Connecting and the catalog: where a DSN points, sessions with dbtools' name and timeouts,
what the server is and has (version, pg_stat_statements, privileges), named objects and the
database's Alembic revision; and ``sandbox``, the throwaway PostgreSQL servers that the demo,
rehearse and the tests start. The lowest layer: it imports nothing else of dbtools but errors
and redaction."""
