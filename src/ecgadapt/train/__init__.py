"""ecgadapt.train."""
