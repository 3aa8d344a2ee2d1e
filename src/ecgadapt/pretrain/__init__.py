"""ecgadapt.pretrain."""
