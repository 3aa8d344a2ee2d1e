"""The benchmark: specs, grid cells, executors, the grid and the tune search that wraps a fit."""
