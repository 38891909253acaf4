"""Fidelity rungs and promotion across them, the compute budgets, and the yardsticks' share."""
