from __future__ import annotations

import optuna
import pytest

from budgetnas.space.choices import SpaceConfig
from budgetnas.space.count import count_params
from budgetnas.space.sample import Rejected, sample_spec, smallest_network


def _specs(budget: int, n: int, seed: int = 0):
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    specs, rejected = [], 0
    for _ in range(n):
        trial = study.ask()
        try:
            specs.append(sample_spec(trial, budget=budget))
        except Rejected:
            rejected += 1
        study.tell(trial, 0.0)
    return specs, rejected


@pytest.mark.parametrize("budget", [2_000, 5_000, 10_000, 25_000, 100_000])
def test_sampled_specs_stay_under_the_budget(budget):
    specs, rejected = _specs(budget, 60)
    assert rejected == 0
    params = [count_params(s) for s in specs]
    assert max(params) <= budget
    # widths follow the budget: the specs spread over it instead of collapsing to tiny nets
    assert max(params) >= 0.8 * budget
    assert min(params) < 0.6 * budget


def test_tiny_budget_rejects_and_says_why():
    specs, rejected = _specs(400, 40)
    assert rejected > 0
    assert all(count_params(s) <= 400 for s in specs)


def test_same_seed_same_specs():
    a, _ = _specs(10_000, 15, seed=3)
    b, _ = _specs(10_000, 15, seed=3)
    c, _ = _specs(10_000, 15, seed=4)
    assert a == b
    assert a != c


def test_smallest_network_is_a_floor():
    floor = smallest_network()
    assert floor == 262
    specs, _ = _specs(floor, 50)
    assert all(count_params(s) <= floor for s in specs)


def test_space_config_sets_classes_and_norm():
    cfg = SpaceConfig(num_classes=47, norm=(0.5, 0.25))
    specs = [sample_spec(optuna.create_study().ask(), budget=20_000, cfg=cfg) for _ in range(3)]
    assert all(s.num_classes == 47 and s.norm == (0.5, 0.25) for s in specs)


def _hashes(budget: int, seed: int, *, cfg=None, flat: bool = False) -> list[str]:
    import hashlib

    import optuna

    from budgetnas.space.sample import Rejected

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(100):
        trial = study.ask()
        try:
            text = sample_spec(trial, budget=budget, cfg=cfg, flat=flat).to_json()
        except Rejected as rej:
            text = "rejected: " + rej.reason
        study.tell(trial, 0.0)
        out.append(hashlib.sha256(text.encode()).hexdigest()[:16])
    return out


@pytest.mark.parametrize("budget", [5000, 10000, 25000])
def test_the_default_space_samples_what_the_space_before_the_file_did(budget):
    """tests/space/data/space_before_file.json: what the sampler drew before the space was a
    file (written by that code), 100 candidates per budget from seeded random suggestions."""
    import json
    from pathlib import Path

    before = json.loads((Path(__file__).parent / "data" / "space_before_file.json").read_text())
    assert _hashes(budget, budget) == before[str(budget)]
    if budget == 10000:
        assert _hashes(budget, 1, flat=True) == before["flat-10000"]
