"""Sampling candidates under the cap: samplers, assigned sizes, the pruner, a searched recipe,
and the objective that trains a trial."""
