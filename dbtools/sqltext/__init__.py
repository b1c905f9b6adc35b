"""SQL text: the one sqlglot entry point and what a statement touches (``parse``), query families
and point lookups (``families``), splitting scripts into statements (``split``), and scrubbing
literals out of texts before they are stored or shown (``scrub``)."""
