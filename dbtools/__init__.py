"""dbtools: take a PostgreSQL-backed service safely through a performance rollout."""

__version__ = "0.1.0"
