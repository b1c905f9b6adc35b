"""A window and its figures, pure: no database access.

``windows`` names a window (labels, times, ``last:10m``) and says when the samples that answer it
cover it; ``requests`` holds the application's request metrics over a window and their edge
bounds; ``deltas`` subtracts a window's two states entry by entry (the reference); ``sums`` says
what a window's entries add up to over a scope (``WindowSums``, ``sum_deltas``: the reference the
store's SQL sums are tested against); ``counting`` judges whether pg_stat_statements counted
every statement; ``measures`` turns a window and its sums into the figures verify judges
(``measure``) and is the one home of the ratios. The store (``dbtools.store``) fills these types
from what it keeps.
"""
