"""Tools on a finished run: per-record predictions, scores on an external set, robustness under corruptions."""
