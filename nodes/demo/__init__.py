"""demo: small nodes that need no model — counters, arithmetic and a file writer — for trying
the framework, its scheduler and its statistics."""
