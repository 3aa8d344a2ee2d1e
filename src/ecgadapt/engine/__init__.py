"""The training engine: the fit loop, optimiser groups and schedules, seeding, checkpoints, environment record."""
