"""ecgadapt.eval."""
