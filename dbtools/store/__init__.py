"""The sample store: what is kept of PostgreSQL's statistics between reads, and read back.

``Store`` (``store.store``) is the one object that knows how samples are kept: compact samples
from revision 0005 (``compact``), full copies below it (``full_copies``), in the target's own
``perf_monitoring`` or a central repository keyed by target (``layout`` says which tables a
revision has). It answers headers, windows, request totals (``request_metrics``: the one home of
the SQL over ``request_metrics``), window sums (``window_sums``, by the database) and measures,
states, and the replay of stored changes. ``snapshots`` takes labelled samples (``snapshot``,
``capture``); ``collector`` samples targets every interval (``dbtools collect``). Nothing here
resets statistics.
"""

from dbtools.store.compact import SampleSummary
from dbtools.store.store import Replay, Store, open_store

__all__ = ["Replay", "SampleSummary", "Store", "open_store"]
