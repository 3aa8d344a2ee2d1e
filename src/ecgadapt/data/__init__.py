"""ecgadapt.data."""
