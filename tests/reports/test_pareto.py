from __future__ import annotations

import pandas as pd
import pytest

from budgetnas.reports.front.pareto import best_row, hypervolume, pareto_front


def _frame(rows):
    return pd.DataFrame(rows, columns=["number", "state", "params", "val_acc"])


def _numbers(front):
    return front["number"].tolist()


def test_front_of_a_hand_made_frame():
    df = _frame(
        [
            (0, "complete", 5000, 0.980),
            (1, "complete", 7000, 0.985),  # front
            (2, "complete", 6000, 0.970),  # dominated by 0
            (3, "complete", 9000, 0.991),  # front
            (4, "pruned", 4000, 0.999),  # pruned: never on the front
            (5, "complete", 9500, 0.991),  # same acc, more params: dominated by 3
            (6, "complete", 3000, 0.950),  # front
            (7, "rejected", 12000, None),
        ]
    )
    assert _numbers(pareto_front(df)) == [6, 0, 1, 3]
    assert _numbers(pareto_front(df, cap=8000)) == [6, 0, 1]
    assert int(best_row(df)["number"]) == 3
    assert int(best_row(df, cap=8000)["number"]) == 1


def test_ties_in_both_objectives_stay_together():
    df = _frame([(0, "complete", 100, 0.9), (1, "complete", 100, 0.9), (2, "complete", 100, 0.8)])
    assert _numbers(pareto_front(df)) == [0, 1]
    assert int(best_row(df)["number"]) == 0  # earlier trial wins a full tie


def test_front_matches_brute_force_on_random_frames():
    import random

    rng = random.Random(3)
    for _ in range(50):
        rows = [
            (
                i,
                rng.choice(["complete", "complete", "pruned"]),
                rng.randint(1, 20),
                rng.randint(0, 10) / 10,
            )
            for i in range(rng.randint(1, 30))
        ]
        df = _frame(rows)
        done = [r for r in rows if r[1] == "complete"]

        def dominated(r, done=done):
            return any(o[2] <= r[2] and o[3] >= r[3] and (o[2] < r[2] or o[3] > r[3]) for o in done)

        expected = sorted((r for r in done if not dominated(r)), key=lambda r: (r[2], r[0]))
        assert _numbers(pareto_front(df)) == [r[0] for r in expected]


def test_empty_when_nothing_completed():
    df = _frame([(0, "pruned", 10, 0.5)])
    assert pareto_front(df).empty and best_row(df) is None


def _hv_grid(points, ref_acc, n=400):
    """Brute force: the fraction of a fine grid over [0, 1] x [ref_acc, 1] that some point
    dominates (params no more, accuracy no less), times the box's area."""
    hits = 0
    for i in range(n):
        x = (i + 0.5) / n
        for j in range(n):
            y = ref_acc + (j + 0.5) / n * (1 - ref_acc)
            hits += any(px <= x and py >= y for px, py in points)
    return hits / n / n * (1 - ref_acc)


@pytest.mark.parametrize("seed", range(5))
def test_hypervolume_matches_brute_force(seed):
    import random

    rng = random.Random(seed)
    rows = [
        {"params": rng.randint(500, 10_000), "val_acc": rng.uniform(0.85, 0.99)}
        for _ in range(rng.randint(1, 12))
    ]
    df = pd.DataFrame(rows)
    points = [(r["params"] / 10_000, r["val_acc"]) for r in rows]
    got = hypervolume(df, cap=10_000, ref_acc=0.90)
    assert got == pytest.approx(_hv_grid(points, 0.90), abs=2e-3)


def test_hypervolume_exact_cases():
    one = pd.DataFrame({"params": [5_000], "val_acc": [0.95]})
    assert hypervolume(one, cap=10_000) == pytest.approx(0.5 * 0.05)
    two = pd.DataFrame({"params": [2_000, 5_000, 12_000], "val_acc": [0.92, 0.95, 0.99]})
    assert hypervolume(two, cap=10_000) == pytest.approx(0.3 * 0.02 + 0.5 * 0.05)
    assert hypervolume(pd.DataFrame({"params": [], "val_acc": []}), cap=10_000) == 0.0
    low = pd.DataFrame({"params": [1_000], "val_acc": [0.89]})
    assert hypervolume(low, cap=10_000) == 0.0


def test_reference_networks_are_never_on_the_front_nor_the_best():
    df = _frame(
        [
            (0, "complete", 9798, 0.995),  # seed 001: the most accurate, a yardstick
            (1, "complete", 6000, 0.990),
            (2, "complete", 3000, 0.980),
            (3, "complete", 2000, 0.999),  # seed 00X: smallest and best of all
        ]
    )
    df["reference"] = ["001", None, None, "00X"]
    assert _numbers(pareto_front(df)) == [2, 1]
    assert int(best_row(df)["number"]) == 1
    assert best_row(df[df["reference"].notna()]) is None
