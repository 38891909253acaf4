"""Aimed sizes (``search.schedule.aims``): a share of each largest seed network's parameters
under a cap, where a searched network would dominate it; the sizing, the promotion rule and
the race each aim there."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.sampling.sizing import FRACTION_ATTR, size_fraction, strata
from budgetnas.search.schedule.aims import AIM_BAND, DOMINATE, MAX_AIM_REACH, aims_under
from budgetnas.search.schedule.budgets import Plan
from budgetnas.search.schedule.promotion import Schedule, band_ranks, promotion_order
from budgetnas.search.schedule.rungs import plan_rungs
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.header import aims_line, start_notes
from budgetnas.search.study.options import new_config
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.race import Entrant, Race, RaceRules, pick_entrants
from budgetnas.search.verification.seed_order import contenders, next_seed, smaller_ahead
from tests.helpers import search_args

runner = CliRunner()

SEEDS = {"000": 12_400, "001": 9_798, "002": 8_530, "003": 23_398, "004": 16_966}


def test_a_cap_aims_at_a_share_of_its_largest_seed_networks():
    assert DOMINATE == 0.7
    assert aims_under(10_000, SEEDS.values()) == (6_858, 5_971)  # seeds 001 and 002
    assert aims_under(25_000, SEEDS.values()) == (16_378, 11_876)  # seeds 003 and 004
    assert aims_under(9_000, SEEDS.values()) == (5_971,)
    assert aims_under(8_000, SEEDS.values()) == ()  # no seed network under it
    assert aims_under(10_000, SEEDS.values(), smallest=6_000) == (6_858,)  # the space's floor


def test_a_search_takes_its_aims_from_its_reference_networks(tmp_path, synthetic_root):
    cfg = new_config(out=tmp_path / "a", caps=(10_000,), data_dir=str(synthetic_root))
    assert cfg.aims(10_000) == (6_858, 5_971) and cfg.schedule.lines == (5_971, 6_858)
    ladder = new_config(out=tmp_path / "b", caps=(10_000, 25_000), data_dir=str(synthetic_root))
    assert ladder.aim_lines() == (5_971, 6_858, 11_876, 16_378)
    assert cfg.race_aims() == (5_971, 6_858)
    bare = new_config(
        out=tmp_path / "c", caps=(10_000,), data_dir=str(synthetic_root), references="none"
    )
    assert bare.aims(10_000) == () and bare.schedule.lines == ()
    # a run made before aims (sizing "spread", stored with it) resumes without them
    old = cfg.to_dict() | {"sizing": "spread"}
    assert SearchConfig.from_dict(old).aim_lines() == ()
    # seed networks not raced: the sizing and the promotion aim, the race does not
    unraced = new_config(
        out=tmp_path / "d", caps=(10_000,), data_dir=str(synthetic_root), reference_seeds=0
    )
    assert unraced.aim_lines() == (5_971, 6_858) and unraced.race_aims() == ()
    # said at the start
    assert aims_line(cfg) == (
        "aims: 6,858 (70% of seed 001's), 5,971 (70% of seed 002's) params under 10,000: "
        "candidates are sized, promoted and raced there too, where one as accurate would "
        "dominate the seed network (--sizing spread: no aims)"
    )
    assert aims_line(cfg) in start_notes(cfg) and aims_line(bare) is None


def _one_each(fractions, bounds) -> bool:
    """Whether each fraction can be given its own stratum (the strata overlap, so a
    matching, by backtracking)."""

    def fit(i: int, free: frozenset[int]) -> bool:
        if i == len(fractions):
            return True
        f = math.log(fractions[i])
        return any(
            fit(i + 1, free - {k})
            for k in free
            if bounds[k][0] - 1e-12 <= f <= bounds[k][1] + 1e-12
        )

    return fit(0, frozenset(range(len(bounds))))


def test_each_block_holds_one_slot_per_aim_sized_just_under_it():
    aims = (0.6858, 0.5971)
    bounds = strata(0.3, aims)
    assert bounds[:6] == strata(0.3)  # the cap's own strata are as before
    assert bounds[6:] == [(math.log(a / AIM_BAND), math.log(a)) for a in aims]
    block = len(bounds)
    fractions = [
        size_fraction(k, seed=4, cap=10_000, min_fraction=0.3, aims=aims) for k in range(10 * block)
    ]
    for b in range(10):
        chunk = fractions[b * block : (b + 1) * block]
        assert _one_each(chunk, bounds)
        assert sum(f >= 1 / 1.5 for f in chunk) >= 3  # the top band keeps its three
    # without aims, the sequence is the one it was
    assert [size_fraction(k, seed=4, cap=10_000, min_fraction=0.3) for k in range(6)] == [
        size_fraction(k, seed=4, cap=10_000, min_fraction=0.3, aims=()) for k in range(6)
    ]
    # an aim whose band reaches below the space's smallest target starts at it
    assert strata(0.3, (0.33,))[6] == (math.log(0.3), math.log(0.33))


def _trial(number, params, acc):
    t = create_trial(
        state=TrialState.COMPLETE,
        values=[acc, float(params)],
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"params": params, "rung": 0},
    )
    t.number = number
    return t


def test_a_size_band_does_not_cross_an_aim():
    """A 6.5K network behind 8-9K ones of its band is second there; under the 6,858 line it
    is first among the networks on its side, and moves up before the third 9K network."""
    trials = [
        _trial(0, 9_000, 0.990),
        _trial(1, 8_500, 0.988),
        _trial(2, 9_500, 0.985),
        _trial(3, 6_500, 0.986),
        _trial(4, 6_000, 0.984),
    ]
    assert band_ranks(trials)[3] == 2
    assert band_ranks(trials, lines=(6_858,)) == {0: 0, 1: 1, 2: 2, 3: 0, 4: 1}
    assert [t.number for t in promotion_order(trials, lines=(6_858,))][:2] == [0, 3]
    assert [t.number for t in promotion_order(trials)][:2] == [0, 1]


def test_the_best_readings_under_an_aim_enter_the_race_and_contend():
    readings = [
        ("trial-9", 9_200, 0.9920),
        ("trial-8", 8_700, 0.9915),
        ("trial-6", 6_500, 0.9892),  # 0.28 behind the best: out of the cap's reach
        ("trial-5", 6_100, 0.9890),  # within reach of the best under 6,858
        ("trial-4", 6_000, 0.9889),
        ("trial-3", 5_500, 0.9850),  # out of reach there too
    ]
    keys = pick_entrants([], readings, caps=(10_000,), val_images=5_000)
    assert keys == ["trial-9", "trial-8"]
    keys = pick_entrants([], readings, caps=(10_000,), val_images=5_000, aims=(6_858,))
    assert keys == ["trial-9", "trial-8", "trial-6", "trial-5"]  # MAX_AIM_REACH of them
    assert MAX_AIM_REACH == 2
    race = Race(
        {k: Entrant(k, p, r) for k, p, r in readings}, (10_000,), RaceRules(), 5_000, (6_858,)
    )
    assert race.lines == (6_858, 10_000)
    assert contenders(race) == {"trial-9", "trial-8", "trial-6", "trial-5", "trial-4"}
    assert "trial-6" not in contenders(Race(race.entrants, (10_000,), RaceRules(), 5_000))


def _with(race, key, *vals):
    e = race.entrants[key]
    race.entrants[key] = Entrant(key, e.params, e.reading, e.yardstick, vals=e.vals + vals)


@pytest.mark.parametrize("most", [3, 8])
def test_a_smaller_network_level_with_a_yardstick_but_ahead_gets_seeds_up_to_the_most(most):
    """Ahead of seed 001 by 0.13 point on 3 + 3 seeds is not clear; with room for more seeds
    the pair gets them (the fewer-seeded first) until the verdict is clear or both have the
    most."""
    race = Race(
        {
            e.key: e
            for e in (
                Entrant("trial-9", 9_104, 0.9950, vals=(0.9955, 0.9945, 0.9950)),
                Entrant("trial-5", 6_500, 0.9910, vals=(0.9920, 0.9895, 0.9910)),
                Entrant("zoo-001", 9_798, 0.9880, yardstick=True, vals=(0.9907, 0.9882, 0.9897)),
            )
        },
        (10_000,),
        RaceRules(start=2, least=3, most=most),
        5_000,
    )
    assert race.compare(race.entrants["trial-5"], race.entrants["zoo-001"]).word == "level"
    if most == 3:
        assert smaller_ahead(race, 10_000) == [] and next_seed(race) is None
        return
    order = []
    while (key := next_seed(race)) is not None:
        order.append(key)
        _with(race, key, 0.9910 if key == "trial-5" else 0.9890)
    assert order[:2] == ["trial-5", "zoo-001"] and set(order) == {"trial-5", "zoo-001"}
    ((e, v),) = race.smallest_ahead(10_000)
    assert (e.key, v.word) == ("trial-5", "ahead") and 3 < v.seeds < most
    assert v.text_of(e).startswith("trial 5 (6,500 params: 66.3% of seed 001's) is ahead of")


def test_a_time_budget_keeps_room_for_the_best_network_under_each_aim():
    """The race's reserve: the front's members (at most 5) and, per aim, one network with the
    least seeds, each a training at the target (1,000 images x 2 epochs here), but no more
    networks than reach the target."""
    rungs = plan_rungs(epochs=2, images=1000, rungs=2, eta=3)
    trials = [_trial(n, 5_000 + n, 0.9) for n in range(18)]  # 6 reach the target
    plain = Plan(Schedule(rungs), verify_seeds=3).race_work(trials)
    aimed = Plan(Schedule(rungs, lines=(5_971, 6_858)), verify_seeds=3).race_work(trials)
    assert plain == 5 * 3 * 2_000 and aimed == 6 * 3 * 2_000
    few = trials[:9]  # 3 reach the target: the front and the aims' best are among those 3
    assert Plan(Schedule(rungs, lines=(5_971, 6_858)), verify_seeds=3).race_work(few) == (
        3 * 3 * 2_000
    )
    assert Plan(Schedule(rungs, lines=(5_971,)), verify_seeds=3).race_work([]) == 0
    unraced = Plan(Schedule(rungs, lines=(5_971, 6_858)), verify_seeds=3, reference_seeds=0)
    assert unraced.race_work(trials) == plain  # no seed network raced: nothing to aim at


def _race(*entrants, most=8):
    return Race({e.key: e for e in entrants}, (10_000,), RaceRules(start=2, least=3, most=most))


def test_every_smaller_network_gets_its_least_seeds_before_a_level_one_gets_more():
    """trial-1 (3K) is level with seed 001, trial-2 (6K) clearly ahead on 2 seeds: trial-2's
    third seed (which names it) comes before trial-1's fourth."""
    race = _race(
        Entrant("trial-9", 9_104, 0.9960, vals=(0.9960, 0.9961, 0.9959)),
        Entrant("trial-1", 3_000, 0.9895, vals=(0.9900, 0.9880, 0.9895)),
        Entrant("trial-2", 6_000, 0.9930, vals=(0.9930, 0.9931)),
        Entrant("zoo-001", 9_798, 0.9880, yardstick=True, vals=(0.9885, 0.9880, 0.9884)),
    )
    ys = race.entrants["zoo-001"]
    assert race.compare(race.entrants["trial-1"], ys).word == "level"
    assert race.compare(race.entrants["trial-2"], ys).word == "ahead"
    assert next_seed(race) == "trial-2"
    _with(race, "trial-2", 0.9932)
    ((e, v),) = race.smallest_ahead(10_000)
    assert e.key == "trial-2" and v.seeds == 3
    assert next_seed(race) == "trial-1"  # then the level one, towards the most


def test_a_pair_that_stays_level_stops_at_the_most_seeds():
    """New seeds at each one's mean keep trial-5 0.07 point ahead of seed 001: level on 5 + 5
    seeds, and 5 is the most."""
    race = _race(
        Entrant("trial-9", 9_104, 0.9960, vals=(0.9960, 0.9961, 0.9959)),
        Entrant("trial-5", 6_500, 0.9890, vals=(0.9900, 0.9880, 0.9890)),
        Entrant("zoo-001", 9_798, 0.9880, yardstick=True, vals=(0.9885, 0.9880, 0.9884)),
        most=5,
    )
    means = {"trial-5": 0.9890, "zoo-001": 0.98830}
    order = []
    while (key := next_seed(race)) is not None:
        order.append(key)
        _with(race, key, means[key])
    assert sorted(order) == ["trial-5", "trial-5", "zoo-001", "zoo-001"]
    e, y = race.entrants["trial-5"], race.entrants["zoo-001"]
    assert (e.done, y.done) == (5, 5) and race.compare(e, y).word == "level"
    assert race.smallest_ahead(10_000) == []  # level: not named


@pytest.mark.slow
def test_a_search_sizes_one_candidate_of_each_block_under_its_aim(tmp_path, synthetic_root):
    """Seed 001 as the one seed network under 10K: blocks of seven, one slot sized from 5,486
    to 6,858 parameters; the candidates' sizes are the sequence with that aim."""
    run = tmp_path / "run"
    extra = ("--trials", "7", "--references", "001", "--rungs", "1", "--verify-seeds", "0")
    result = runner.invoke(app, search_args(synthetic_root, run, *extra, budget="10k"))
    assert result.exit_code == 0, result.stderr
    cfg, study = open_run(run)
    assert cfg.sizing == "aimed" and cfg.aims(10_000) == (6_858,)
    sampled = [t for t in study.trials if FRACTION_ATTR in t.user_attrs]
    assert len(sampled) == 7
    expected = [
        size_fraction(k, seed=cfg.seed, cap=10_000, min_fraction=0.3, aims=(0.6858,))
        for k in range(7)
    ]
    assert sorted(t.user_attrs[FRACTION_ATTR] for t in sampled) == sorted(expected)
    assert sum(0.6858 / AIM_BAND <= f <= 0.6858 for f in expected) >= 1
