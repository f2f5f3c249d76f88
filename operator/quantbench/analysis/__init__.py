"""Results -> summary: statistics, the results-folder layout, verdicts (pure functions)."""
