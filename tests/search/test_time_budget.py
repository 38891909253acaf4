"""A time budget's plan: each seed network weighed by its own rate, the race's networks by the
largest trained so far, the end's overhead kept; the trials stop when only the race's time is
left; a search ends within its budget."""

from __future__ import annotations

import os
import time

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from budgetnas.search.schedule.budgets import Plan, TimeBudget
from budgetnas.search.schedule.promotion import Schedule
from budgetnas.search.schedule.rungs import plan_rungs
from tests.helpers import quick_config


def _trial(number, *, rung=0, params=5000, images=1000, epochs=1, wall=1.0, **attrs):
    t = create_trial(
        state=TrialState.COMPLETE,
        values=[0.9, float(params)],
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={
            "params": params,
            "rung": rung,
            "val_curve": [0.9] * epochs,
            "train_images": images,
            "wall_time_s": wall,
            **attrs,
        },
    )
    t.number = number
    return t


SCHEDULE = Schedule(plan_rungs(epochs=2, images=1000, rungs=2, eta=3))  # 667 x 1, 1000 x 2


def test_each_seed_network_is_weighed_by_its_own_rate():
    """Seed 001 trains 100x slower per image than a candidate, seed 002 10x; the cache holds
    002's verification. The race's plan weighs each by its own rate and share, and a
    reference trial's time counts as its own weight of candidate image-epochs."""
    plan = Plan(
        SCHEDULE,
        verify_seeds=2,
        references_at_target=2,
        reference_weight={"001": 100.0, "002": 10.0},
        reference_pending={"001": 1.0, "002": 0.0},
    )
    assert plan.references_cost() == 100.0
    assert plan.race_work([]) == 2 * 100 * 2000  # no candidate yet: only the references
    budget = TimeBudget(time.time() + 3600, plan)
    trials = [
        _trial(0, wall=1.0),  # 1,000 image-epochs in 1 s
        _trial(1, reference="001", wall=100.0),  # 100 s: 1,000 x 100 candidate image-epochs
        _trial(2, reference="002", wall=10.0),
    ]
    assert budget.seconds_per_image_epoch(trials) == pytest.approx(111 / 111_000)
    # a study made before per-reference weights: one weight and share for all
    old = Plan(SCHEDULE, verify_seeds=2, references_at_target=2, reference_weight=55.0)
    assert old.references_cost() == 110.0 and old.weight_of("001") == 55.0


def test_the_driver_keeps_each_seed_networks_weight_and_share(
    synthetic_root, tmp_path, monkeypatch
):
    """What the start timed is stored per seed network and read back by every process."""
    import budgetnas.search.study.driver as driver
    from budgetnas.search.pipeline import run_search
    from budgetnas.search.schedule.yardsticks import Costs

    costs = Costs({"001": 0.01, "002": 0.001}, candidate=0.0001)
    monkeypatch.setattr(driver, "time_costs", lambda *a, **k: costs)
    seen = []

    class Stop(Exception):
        pass

    def drive(cfg, study, *a, **k):
        seen.append(driver.time_budget(cfg, study))
        raise Stop

    monkeypatch.setattr(driver, "_drive", drive)
    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        caps=(10_000,),
        epochs=2,
        train_subset=1000,
        rungs=2,
        verify_seeds=2,
        budget_time=3600,
        references="001,002",
    )
    with pytest.raises(Stop):
        run_search(cfg, quiet=True)
    (budget,) = seen
    assert budget.plan.weight_of("001") == pytest.approx(100.0)
    assert budget.plan.weight_of("002") == pytest.approx(10.0)
    assert budget.overhead_s >= driver.END_MARGIN_S  # the end's overhead is kept


def test_the_race_is_planned_at_the_rate_of_the_largest_networks():
    """Networks at the highest rung reached train 3x slower per image-epoch than the mean
    candidate: the race's front members are weighed so."""
    plan = Plan(SCHEDULE, verify_seeds=2)
    budget = TimeBudget(time.time() + 3600, plan)
    trials = [_trial(n, params=2000, wall=1.0) for n in range(6)]
    trials += [_trial(6, rung=1, params=9000, images=1000, epochs=2, wall=6.0)]
    every = 12.0 / 8000  # 12 s over 8,000 image-epochs
    assert budget.front_weight(trials) == pytest.approx((6.0 / 2000) / every)
    # no rung above 0 yet: the largest third of the candidates
    small = [_trial(n, params=1000 * (n + 1), wall=0.5 * (n + 1)) for n in range(6)]
    top = (2.5 + 3.0) / 2000
    assert budget.front_weight(small) == pytest.approx(top / (10.5 / 6000))


def test_the_trials_stop_when_only_the_races_time_is_left(synthetic_root, tmp_path):
    """A deadline closer than the race's planned time: the schedule's guard stops the study
    after the trial that just ended, and the search goes on to its race."""
    from budgetnas.search.study.guards import ScheduleGuard

    cfg = quick_config(synthetic_root, tmp_path / "r", caps=(10_000,), references="none")
    plan = Plan(cfg.schedule, verify_seeds=3)
    trials = [_trial(n, images=300, wall=2.0) for n in range(3)]
    # the race: 3 front members x 3 seeds x 300 image-epochs at 2 s / 300: 18 s, + 5 s
    budget = TimeBudget(time.time() + 20, plan, overhead_s=5.0)
    assert budget.race_seconds(trials) == pytest.approx(23.0)
    assert budget.race_due(trials, time.time())
    assert not TimeBudget(time.time() + 60, plan, overhead_s=5.0).race_due(trials, time.time())

    class Study:
        stopped = False

        def get_trials(self, deepcopy=False):
            return trials

        def stop(self):
            self.stopped = True

    guard, study = ScheduleGuard(cfg, budget), Study()
    guard(study, trials[-1])
    assert study.stopped and guard.race_due


def test_a_budget_that_cannot_hold_the_least_search_is_one_line_at_the_start(
    synthetic_root, tmp_path
):
    from budgetnas.search.errors import SearchError
    from budgetnas.search.schedule.yardsticks import Costs, check_budget_fits

    cfg = quick_config(synthetic_root, tmp_path / "r", budget_time=30, references="none")
    # one candidate at the target (one rung of 300 images): 300 x 0.01 s (no verification)
    costs = Costs({}, candidate=0.01)
    check_budget_fits(cfg, costs, overhead=20.0)  # 3 s + 20 s: fits 30 s
    with pytest.raises(SearchError) as err:
        check_budget_fits(cfg, costs, overhead=28.0)
    assert str(err.value) == (
        "--budget-time 30s cannot hold the least search: 1 candidate up to the target takes "
        "about 3 s here, and starting, loading the data and the end take about 28 s; give "
        "--budget-time 1m or more, or a smaller --epochs or --train-subset"
    )


@pytest.mark.slow
def test_a_time_budget_ends_within_ten_seconds_of_what_was_given(synthetic_root, tmp_path):
    """The whole command, from its start to its last line, ends within max(10 s, 2%) of
    --budget-time: the trials stop when the race's time is due, the race starts a seed only
    when it fits, and the end's overhead is in the plan."""
    import subprocess
    import sys

    from tests.helpers import search_args

    args = search_args(
        synthetic_root,
        tmp_path / "run",
        "--budget-time",
        "60s",
        "--trials",
        "1000000",
        "--epochs",
        "2",
        "--train-subset",
        "1000",
        "--references",
        "002",
        "--verify-seeds",
        "2",
        "--workers",
        "2",
        budget="10k",
    )
    start = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "budgetnas.search.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "BUDGETNAS_CACHE": "off"},
    )
    wall = time.time() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert wall <= 60 + 10, (wall, result.stderr[-3000:])
    assert any(line.startswith("answer under 10,000: ") for line in result.stderr.splitlines())


def test_the_race_is_planned_at_most_its_share_of_the_budget():
    """On a slow CPU the race's full plan can take most of --budget-time: while candidates
    are sampled it is planned at no more than RACE_SHARE of the budget's length, and spends
    what is left in its own order once sampling stops."""
    from budgetnas.search.schedule.budgets import RACE_SHARE

    cfg_plan = Plan(SCHEDULE, verify_seeds=3)
    trials = [_trial(n, images=300, wall=2.0) for n in range(9)]
    unbounded = TimeBudget(time.time() + 100, cfg_plan, overhead_s=5.0)
    full = unbounded.race_seconds(trials) - 5.0
    length = full  # the whole plan would take the whole budget
    bounded = TimeBudget(time.time() + length, cfg_plan, overhead_s=5.0, length_s=length)
    assert bounded.race_seconds(trials) == pytest.approx(RACE_SHARE * length + 5.0)
    # the search itself is planned the same: only the race's part is bounded
    rate = bounded.seconds_per_image_epoch(trials)
    assert rate == pytest.approx(2.0 / 300)
    search_s = rate * cfg_plan.search_work(trials, extra=1)
    assert search_s > 0
    assert bounded.remaining(trials, extra=1) == pytest.approx(
        search_s + RACE_SHARE * length + 5.0, rel=1e-6
    )
    assert unbounded.remaining(trials, extra=1) > bounded.remaining(trials, extra=1) + 10
    assert bounded.race_due(trials, time.time() + length * (1 - RACE_SHARE))
    assert not bounded.race_due(trials, time.time() + length * (1 - RACE_SHARE) - 10)
    # a plan under its share is planned whole
    roomy = TimeBudget(time.time() + 100 * full, cfg_plan, overhead_s=5.0, length_s=100 * full)
    assert roomy.race_seconds(trials) == pytest.approx(full + 5.0)


def test_the_races_bound_keeps_what_its_verdict_needs():
    """Seed networks that take most of the race's share: the bound never cuts below their
    seeds and the answer's (``verify_seeds`` of one network at the target)."""
    from budgetnas.search.schedule.budgets import RACE_SHARE

    plan = Plan(SCHEDULE, verify_seeds=3, references_at_target=2, reference_weight=4.0)
    trials = [_trial(n, images=300, wall=2.0) for n in range(9)]
    searched, least, references = plan.race_parts(trials)
    assert 0 < least < searched and references == 3 * 2 * 4.0 * SCHEDULE.target.image_epochs
    rate = 2.0 / 300
    need = rate * (least + references)
    length = need / RACE_SHARE / 2  # the share is half of what the verdict needs
    budget = TimeBudget(time.time() + length, plan, length_s=length)
    assert budget.race_seconds(trials) == pytest.approx(need)
