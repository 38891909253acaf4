"""The numbers of a report, computed from stored trials: the trials frame, the exact Pareto
front, candidates per size band, where the compute went."""
