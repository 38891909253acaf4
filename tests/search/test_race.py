"""The race's rules (``search.race``): who enters, who gets the next seed, who is out, the
answer and the verdict; pure functions of the seeds so far."""

from __future__ import annotations

import random

import pytest

from budgetnas.search.verification.race import (
    MAX_REACH,
    Entrant,
    Race,
    RaceRules,
    Verdict,
    pick_entrants,
    pooled_spread,
    reading_spread,
)
from budgetnas.search.verification.seed_order import (
    contenders,
    finished,
    leads,
    next_seed,
    smaller_ahead,
)


def test_the_reading_spread_is_binomial():
    assert reading_spread(0.99, 5000) == pytest.approx(0.001407, abs=1e-6)
    assert reading_spread(0.87, 5000) == pytest.approx(0.004756, abs=1e-6)
    assert reading_spread(1.0, 100) > 0  # never zero: a perfect reading still has a spread


def test_the_front_enters_and_so_do_readings_within_reach_of_the_best_under_each_cap():
    front = [("trial-1", 3000, 0.85), ("trial-9", 9200, 0.8794)]
    readings = [
        ("trial-1", 3000, 0.85),
        ("trial-9", 9200, 0.8794),
        ("trial-19", 9631, 0.8746),  # 0.48 behind: within two spreads (0.95)
        ("trial-72", 9863, 0.8738),
        ("trial-5", 8000, 0.8690),  # 1.04 behind: out of reach
        ("trial-3", 4500, 0.8600),  # the best under 5K
        ("trial-4", 4400, 0.8560),  # within reach of it
    ]
    keys = pick_entrants(front, readings, caps=(5000, 10_000), val_images=5000)
    assert keys == ["trial-1", "trial-9", "trial-3", "trial-4", "trial-19", "trial-72"]


def test_at_most_max_reach_more_per_cap():
    readings = [(f"trial-{i}", 9000 + i, 0.99 - i * 1e-5) for i in range(10)]
    keys = pick_entrants([], readings, caps=(10_000,), val_images=5000)
    assert keys == [f"trial-{i}" for i in range(MAX_REACH)]


def test_the_pooled_spread_leans_on_the_prior_while_seeds_are_few():
    few = [Entrant("a", 1, vals=(0.90, 0.92))]  # s = 0.0141 on 1 df
    assert pooled_spread(few, 0.005) == pytest.approx(((0.0002 + 4 * 0.005**2) / 5) ** 0.5)
    assert pooled_spread([], 0.005) == pytest.approx(0.005)


def _race(*entrants, caps=(10_000,), rules=RaceRules()):
    return Race({e.key: e for e in entrants}, caps, rules, val_images=5000)


def test_start_seeds_come_first_best_reading_first():
    race = _race(
        Entrant("trial-1", 9000, 0.990),
        Entrant("trial-2", 8000, 0.992),
        Entrant("zoo-001", 9798, 0.991, yardstick=True),
    )
    assert leads(race) == {"trial-2", "zoo-001"}  # the best reading under the cap, the yardstick
    assert next_seed(race) == "trial-2"
    assert next_seed(race, busy={"trial-2"}) == "zoo-001"
    assert next_seed(race, busy={"trial-2", "zoo-001"}) == "trial-1"  # no waiting for the leads
    race.entrants["trial-2"] = Entrant("trial-2", 8000, 0.992, vals=(0.99,))
    # the best reading to its start seeds: trial-2's second before seed 001's first
    assert next_seed(race) == "trial-2"
    # decisions wait for every start seed: nothing else to do while the last ones train
    done = {
        k: Entrant(k, e.params, e.reading, e.yardstick, vals=(0.99, 0.99))
        for k, e in race.entrants.items()
    }
    done["zoo-001"] = Entrant("zoo-001", 9798, 0.991, True, vals=(0.99,))
    race.entrants = done
    assert next_seed(race, busy={"zoo-001"}) is None


def test_a_contender_clearly_behind_stops_and_one_level_with_the_leader_races_on():
    rules = RaceRules(start=2, least=2, most=6)
    race = _race(
        Entrant("trial-1", 9000, vals=(0.9910, 0.9914)),
        Entrant("trial-2", 8000, vals=(0.9908, 0.9912)),  # level: 0.02 behind
        Entrant("trial-3", 7000, vals=(0.9700, 0.9720)),  # 2 points behind: out
        rules=rules,
    )
    (s,) = race.standings()
    assert s.answer.key == "trial-1" and s.out == {"trial-3"}
    assert s.needs == ("trial-1", "trial-2")  # the fewest seeds first, the leader on a tie
    assert next_seed(race) == "trial-1"
    race.entrants["trial-1"] = Entrant("trial-1", 9000, vals=(0.9910, 0.9914, 0.9912))
    assert next_seed(race) == "trial-2"
    # at the most seeds, nobody needs more: the race is over
    race.entrants = {k: Entrant(k, e.params, vals=e.vals * 3) for k, e in race.entrants.items()}
    assert race.standings()[0].needs == () and finished(race)


def test_the_answer_and_the_strongest_yardstick_get_the_verdicts_least_seeds():
    race = _race(
        Entrant("trial-1", 9000, vals=(0.9950, 0.9950)),
        Entrant("zoo-001", 9798, yardstick=True, vals=(0.9850, 0.9850)),
        Entrant("zoo-002", 8530, yardstick=True, vals=(0.9650, 0.9650)),
    )
    (s,) = race.standings()
    assert [v.word for v in s.verdicts] == ["ahead", "ahead"]  # clear at two seeds each
    assert s.needs == ()
    assert next_seed(race) == "trial-1"  # to the verdict's 3 seeds
    assert next_seed(race, busy={"trial-1"}) == "zoo-001"  # the strongest yardstick, not 002
    race.entrants["trial-1"] = Entrant("trial-1", 9000, vals=(0.995,) * 3)
    race.entrants["zoo-001"] = Entrant("zoo-001", 9798, yardstick=True, vals=(0.985,) * 3)
    assert finished(race)  # seed 002 stays at two seeds: it shows where it stands


def test_a_yardstick_level_with_the_answer_races_on_and_the_verdict_says_so():
    race = _race(
        Entrant("trial-100", 9223, 0.8794, vals=(0.8650, 0.8742, 0.8696)),
        Entrant("zoo-001", 9798, 0.8662, yardstick=True, vals=(0.8735, 0.8741, 0.8738)),
    )
    (s,) = race.standings()
    (v,) = s.verdicts
    assert v.word == "level" and set(s.needs) == {"zoo-001", "trial-100"}
    assert v.text() == (
        "level with seed 001 (hand-made, 9,798 params): -0.42 point on validation (3 + 3 seeds)"
    )
    behind = Verdict("behind", -0.0042, 3, 3, race.entrants["zoo-001"])
    assert behind.text() == (
        "behind seed 001 (hand-made, 9,798 params) by 0.42 point on validation (3 + 3 seeds)"
    )


def test_each_cap_of_a_ladder_has_its_own_answer_and_yardsticks():
    race = _race(
        Entrant("trial-1", 4800, vals=(0.980, 0.981, 0.980)),
        Entrant("trial-2", 9500, vals=(0.990, 0.991, 0.990)),
        Entrant("zoo-001", 9798, yardstick=True, vals=(0.985, 0.986, 0.985)),
        caps=(5000, 10_000),
    )
    small, large = race.standings()
    assert (small.answer.key, small.verdicts) == ("trial-1", ())  # no seed network under 5K
    assert large.answer.key == "trial-2" and [v.word for v in large.verdicts] == ["ahead"]


def _simulate(truths, *, noise, readings, rules, rng):
    """Run a race to its end with seeds drawn around ``truths``; returns (answer, seeds)."""
    race = _race(
        *(Entrant(k, 9000 + i, readings[k]) for i, k in enumerate(truths)),
        rules=rules,
    )
    seeds = 0
    while (key := next_seed(race)) is not None:
        e = race.entrants[key]
        race.entrants[key] = Entrant(
            key, e.params, e.reading, vals=e.vals + (rng.gauss(truths[key], noise),)
        )
        seeds += 1
    return race.standings()[0].answer.key, seeds


def test_the_race_finds_the_best_network_more_often_than_the_best_reading():
    """Five networks 0.3 point apart on seeds 0.45 point noisy (10-class data at 87%): the
    best single reading is the best network about a third of the time; the race's answer
    much more often, within the most seeds."""
    rng = random.Random(0)
    truths = {f"trial-{i}": 0.870 + 0.003 * i for i in range(5)}
    best = max(truths, key=truths.get)
    rules = RaceRules(start=2, least=3, most=8)
    by_reading = by_race = 0
    for _ in range(200):
        readings = {k: rng.gauss(t, 0.0045) for k, t in truths.items()}
        by_reading += max(readings, key=readings.get) == best
        answer, seeds = _simulate(truths, noise=0.0045, readings=readings, rules=rules, rng=rng)
        by_race += answer == best
        assert seeds <= 5 * rules.most
    assert by_race > by_reading + 40, (by_race, by_reading)


def _with(race, key, *vals):
    e = race.entrants[key]
    race.entrants[key] = Entrant(key, e.params, e.reading, e.yardstick, vals=e.vals + vals)


def test_the_verdicts_seeds_come_before_the_start_seeds_of_the_fronts_far_members():
    """A time budget that cannot hold every seed cuts the front's small members (far below the
    best reading: they cannot be the answer), not the answer's and the yardstick's third
    seeds: the 45-minute 10K search raced 11 networks at 2 seeds and ended with its answer
    and seed 001 at 2 seeds each."""
    race = _race(
        Entrant("trial-9", 9104, 0.9914),
        Entrant("trial-8", 8800, 0.9905),  # within reach of the best reading (0.28 point)
        Entrant("trial-3", 3202, 0.9790),  # the front's smallest: far below
        Entrant("trial-4", 4014, 0.9840),
        Entrant("zoo-001", 9798, 0.9895, yardstick=True),
    )
    assert contenders(race) == {"trial-9", "trial-8", "zoo-001"}
    order = []
    while (key := next_seed(race)) is not None:
        order.append(key)
        e = race.entrants[key]
        base = {"trial-9": 0.9914, "trial-8": 0.9890, "zoo-001": 0.9895}.get(key, 0.9800)
        _with(race, key, base + 0.0001 * e.done)
    assert order[:4] == ["trial-9"] * 2 + ["zoo-001"] * 2  # the leads' start seeds
    assert order[4:6] == ["trial-9", "zoo-001"]  # the verdict's third seeds (clear at 3 + 3)
    assert order[6:8] == ["trial-8"] * 2  # then the other contender
    assert sorted(order[8:12]) == ["trial-3"] * 2 + ["trial-4"] * 2  # then the far members
    # a budget that holds 8 seeds: the verdict still rests on 3 + 3
    race = _race(*(Entrant(k, e.params, e.reading, e.yardstick) for k, e in race.entrants.items()))
    for _ in range(8):
        key = next_seed(race)
        _with(race, key, {"trial-9": 0.9914, "zoo-001": 0.9895}.get(key, 0.9890))
    assert (race.entrants["trial-9"].done, race.entrants["zoo-001"].done) == (3, 3)
    assert race.entrants["trial-3"].done == 0


def test_a_smaller_network_ahead_of_a_yardstick_gets_the_least_seeds_and_is_named():
    rules = RaceRules(start=2, least=3, most=3)
    race = _race(
        Entrant("trial-9", 9104, 0.9934, vals=(0.9935, 0.9933, 0.9934)),
        Entrant("trial-5", 6500, 0.9910, vals=(0.9904, 0.9908)),  # out of the answer's race
        Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=(0.9895, 0.9893, 0.9894)),
        rules=rules,
    )
    assert race.standings()[0].out == {"trial-5"}
    assert smaller_ahead(race, 10_000) == [(race.entrants["trial-5"], race.entrants["zoo-001"])]
    assert next_seed(race) == "trial-5"  # ahead of seed 001 by 0.12, not yet clearly
    _with(race, "trial-5", 0.9912)
    assert smaller_ahead(race, 10_000) == [] and finished(race)
    ((e, v),) = race.smallest_ahead(10_000)
    assert e.key == "trial-5" and v.word == "ahead"
    assert v.text_of(e) == (
        "trial 5 (6,500 params: 66.3% of seed 001's) is ahead of seed 001 (hand-made, 9,798 "
        "params) by 0.14 point on validation (3 + 3 seeds)"
    )
    # one behind the yardstick is neither raced for it nor named
    race.entrants["trial-5"] = Entrant("trial-5", 6500, 0.9910, vals=(0.9880, 0.9885))
    assert smaller_ahead(race, 10_000) == [] and race.smallest_ahead(10_000) == []


def test_a_start_seed_that_cannot_fit_holds_up_neither_the_verdict_nor_the_rest():
    race = _race(
        Entrant("trial-9", 9104, 0.9914, vals=(0.9914, 0.9915)),
        Entrant("trial-3", 3202, 0.9790),  # a far member of the front
        Entrant("zoo-001", 9798, 0.9895, yardstick=True),  # too slow for the time left
    )
    assert not race.far(race.entrants["zoo-001"])  # a lead: its start seed would hold the verdict
    fits = lambda key, n=1: key != "zoo-001"  # noqa: E731
    assert next_seed(race, fits=fits) == "trial-9"  # the answer's third seed still comes first
    _with(race, "trial-9", 0.9913)
    assert next_seed(race, fits=fits) == "trial-3"
    assert next_seed(race, busy={"zoo-001"}) == "trial-3"  # in flight: no waiting for it


def test_a_far_members_start_seed_in_flight_holds_the_level_ones_until_it_lands():
    race = _race(
        Entrant("trial-9", 9104, 0.9914, vals=(0.9914, 0.9915, 0.9913)),
        Entrant("trial-8", 8800, 0.9905, vals=(0.9912, 0.9911)),  # level with the leader
        Entrant("trial-3", 3202, 0.9790, vals=(0.98,)),  # its second seed in flight
        Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=(0.9895, 0.9893, 0.9890)),
    )
    assert next_seed(race, busy={"trial-3"}) is None  # a process waits for it (racing polls)
    _with(race, "trial-3", 0.98)
    assert next_seed(race) == "trial-8"


def test_a_smaller_network_clearly_ahead_on_two_seeds_is_named_only_on_the_least_seeds():
    race = _race(
        Entrant("trial-9", 9104, 0.9934, vals=(0.9935, 0.9933, 0.9934)),
        Entrant("trial-2", 3000, 0.9930, vals=(0.9930, 0.9931)),  # clearly ahead already
        Entrant("trial-5", 6500, 0.9910, vals=(0.9904, 0.9908)),  # larger than trial-2
        Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=(0.9855, 0.9853, 0.9854)),
        rules=RaceRules(start=2, least=3, most=3),
    )
    assert race.smallest_ahead(10_000) == []  # 2 seeds: not named yet
    assert [e.key for e, _ in smaller_ahead(race, 10_000)] == ["trial-2", "trial-5"]
    assert next_seed(race) == "trial-2"
    _with(race, "trial-2", 0.9932)
    ((e, v),) = race.smallest_ahead(10_000)
    assert e.key == "trial-2" and v.word == "ahead" and v.seeds == 3
    assert smaller_ahead(race, 10_000) == [] and finished(race)  # trial-5 cannot change it


def test_on_a_ladder_the_hard_caps_verdict_seeds_come_first():
    race = _race(
        Entrant("trial-1", 4800, 0.9810, vals=(0.9810, 0.9811)),
        Entrant("trial-2", 9500, 0.9910, vals=(0.9910, 0.9911)),
        Entrant("zoo-004", 4900, 0.9700, yardstick=True, vals=(0.9700, 0.9701)),
        Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=(0.9850, 0.9851)),
        caps=(5000, 10_000),
    )
    assert next_seed(race) == "trial-2"
    assert next_seed(race, busy={"trial-2"}) == "zoo-001"
    assert next_seed(race, busy={"trial-2", "zoo-001"}) == "trial-1"


def test_a_budget_of_23_seeds_gives_the_verdict_its_seeds_before_ten_contenders_theirs():
    """The 45-minute 10K search on a CPU (fp32): 10 contenders within reach under the cap and
    its aims, seeds 001 and 002; 23 seeds before the deadline went to every contender's start
    seeds and left seed 001 at 2. Replayed with each network's measured mean as every one of
    its seeds, spread 0.1 point: the answer (one of the two best networks) and seed 001 end
    with at least the least seeds, and the cut falls on the lowest readings."""
    readings = {  # key: (params, reading, measured mean)
        "trial-99": (6676, 0.9906, 0.9910),
        "trial-151": (6750, 0.9906, 0.9912),
        "trial-138": (8899, 0.9902, 0.9900),
        "trial-87": (8918, 0.9900, 0.9887),
        "trial-111": (6663, 0.9898, 0.9893),
        "trial-123": (9080, 0.9896, 0.9895),
        "trial-48": (5434, 0.9894, 0.9874),
        "trial-20": (6534, 0.9884, 0.9880),
        "trial-74": (5668, 0.9878, 0.9892),
    }
    yardsticks = {"zoo-001": (9798, 0.9900, 0.9897), "zoo-002": (8530, 0.9740, 0.9734)}
    entrants = [Entrant(k, p, r) for k, (p, r, _) in readings.items()]
    entrants += [Entrant(k, p, r, yardstick=True) for k, (p, r, _) in yardsticks.items()]
    race = Race(
        {e.key: e for e in entrants},
        (10_000,),
        RaceRules(start=2, least=3, most=8, yardstick_least=3),
        val_images=5000,
        aims=(5971, 6858),
    )
    assert leads(race) == {"trial-99", "trial-48", "zoo-001", "zoo-002"}
    noise = [0.001, -0.001, 0.0] * 3  # each network's seeds: a spread of 0.1 point, as measured
    truth = {k: m for k, (_, _, m) in (readings | yardsticks).items()}
    for _ in range(23):
        key = next_seed(race)
        _with(race, key, truth[key] + noise[race.entrants[key].done])
    (s,) = race.standings()
    answer, strongest = s.answer, s.verdicts[0]
    assert strongest.yardstick.key == "zoo-001"
    assert answer.done >= 3 and strongest.yardstick.done >= 3
    assert answer.key in {"trial-151", "trial-99"} and strongest.margin > 0, strongest.text()
    # seed 002, 1.7 points below the best reading, shows where it stands on one seed
    assert race.entrants["zoo-002"].done == 1 and s.verdicts[1].word == "ahead"
    # what the budget cut is the contenders with the lowest readings, whole: none at one seed
    done = {k: race.entrants[k].done for k in readings}
    assert set(done.values()) <= {0, 2, 3, 4, 5}
    left = [readings[k][1] for k in readings if done[k] == 0]
    started = [readings[k][1] for k in readings if done[k] and k != "trial-48"]  # 48: a lead
    assert left and max(left) <= min(started)


def test_a_level_verdict_gets_early_seeds_only_with_a_lead_that_would_be_clear_on_them():
    def race_with(yardstick_vals):
        return _race(
            Entrant("trial-9", 9104, 0.9914, vals=(0.9912, 0.9914, 0.9913)),
            Entrant("trial-8", 8800, 0.9905),  # a contender not started yet
            Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=yardstick_vals),
        )

    ahead = race_with((0.9900, 0.9902, 0.9901))  # +0.12 on 3 + 3: level, ahead on the mean
    (v,) = ahead.standings()[0].verdicts
    assert (v.word, v.margin > 0) == ("level", True)
    assert next_seed(ahead) == "trial-9"  # its fourth seed before trial-8's first
    assert next_seed(ahead, busy={"trial-9"}) == "zoo-001"
    assert next_seed(ahead, busy={"trial-9", "zoo-001"}) == "trial-8"  # no waiting
    _with(ahead, "trial-9", 0.9913, 0.9912)
    _with(ahead, "zoo-001", 0.9901, 0.9900)  # 5 + 5: EARLY spent (or the verdict clear)
    assert next_seed(ahead) == "trial-8"
    behind = race_with((0.9924, 0.9926, 0.9925))  # level, behind on the mean
    assert behind.standings()[0].verdicts[0].word == "level"
    assert next_seed(behind) == "trial-8"  # a contender may beat seed 001: it comes first
    slight = race_with((0.9909, 0.9911, 0.9910))  # +0.03: not clear on 5 + 5 if it holds
    assert slight.standings()[0].verdicts[0].margin > 0
    assert next_seed(slight) == "trial-8"


def test_a_contender_that_overtakes_the_answer_gets_the_verdicts_seeds_next():
    race = _race(
        Entrant("trial-9", 9104, 0.9914, vals=(0.9900, 0.9902, 0.9901)),
        Entrant("trial-8", 8800, 0.9905, vals=(0.9930, 0.9931)),  # now ahead of trial-9
        Entrant("trial-7", 8700, 0.9904),
        Entrant("zoo-001", 9798, 0.9880, yardstick=True, vals=(0.9850, 0.9851, 0.9850)),
    )
    assert race.standings()[0].answer.key == "trial-8"
    assert next_seed(race) == "trial-8"  # its third seed before trial-7's start seeds


def test_a_yardstick_far_below_the_best_reading_starts_with_one_seed_and_holds_nothing_up():
    race = _race(
        Entrant("trial-9", 9104, 0.9914, vals=(0.9914, 0.9912)),
        Entrant("zoo-001", 9798, 0.9900, yardstick=True, vals=(0.9890, 0.9896)),
        Entrant("zoo-002", 8530, 0.9740, yardstick=True),  # 1.7 points below: far
        Entrant("trial-8", 8800, 0.9905),
    )
    assert [race.far(e) for e in race.entrants.values()] == [False, False, True, False]
    assert race.start_of(race.entrants["zoo-002"]) == 1
    assert next_seed(race) == "zoo-002"
    # its one seed in flight: the verdict's seeds go on (the answer is known) before trial-8's
    assert next_seed(race, busy={"zoo-002"}) == "trial-9"
    _with(race, "zoo-002", 0.9734)
    (s,) = race.standings()
    assert [(v.yardstick.key, v.word, v.their_seeds) for v in s.verdicts] == [
        ("zoo-001", "level", 2),
        ("zoo-002", "ahead", 1),
    ]
    # a far yardstick that turns out the strongest still gets the verdict's least seeds
    race = _race(
        Entrant("trial-9", 9104, 0.8794, vals=(0.8650, 0.8742)),
        Entrant("zoo-001", 9798, 0.8662, yardstick=True, vals=(0.8735,)),
        Entrant("zoo-003", 9000, 0.8760, yardstick=True, vals=(0.8600, 0.8610)),  # not far
    )
    assert race.far(race.entrants["zoo-001"]) and not race.far(race.entrants["zoo-003"])
    assert next_seed(race) == "trial-9"
    _with(race, "trial-9", 0.8696)
    assert race.standings()[0].verdicts[0].yardstick.key == "zoo-001"  # the strongest
    assert next_seed(race) == "zoo-001"


def test_a_verdict_cut_short_says_what_it_wanted():
    from budgetnas.search.verification.standing import held_back

    race = _race(
        Entrant("trial-41", 6689, 0.9912, vals=(0.9908, 0.9908)),
        Entrant("zoo-001", 9798, 0.9900, yardstick=True, vals=(0.9882, 0.9912)),
        Entrant("zoo-002", 8530, 0.9740, yardstick=True, vals=(0.9734, 0.9734)),
    )
    (s,) = race.standings()
    strongest, weak = s.verdicts
    assert strongest.word == "level" and weak.word == "ahead"
    assert held_back(race, s, strongest, "--budget-time") == (
        "; cut short by --budget-time: wanted 3 + 3 seeds, up to 8 + 8 while level"
    )
    assert held_back(race, s, weak, "--budget-time") == ""  # clear, and not the strongest
    assert held_back(race, s, strongest, None) == ""  # not cut: the race ended on its own
    _with(race, "trial-41", 0.9908)
    _with(race, "zoo-001", 0.9897)
    (s,) = race.standings()
    assert held_back(race, s, s.verdicts[0], "--budget-epochs") == (
        "; cut short by --budget-epochs: wanted up to 8 + 8 seeds while level"
    )
    # the yardstick at the most seeds: the race wants no more of the pair, nor does the line
    race.entrants["zoo-001"] = Entrant("zoo-001", 9798, 0.99, True, vals=(0.9887, 0.9907) * 4)
    race.entrants["trial-41"] = Entrant("trial-41", 6689, 0.9912, vals=(0.9892, 0.9912) * 4)
    (s,) = race.standings()
    assert (
        s.verdicts[0].word == "level" and held_back(race, s, s.verdicts[0], "--budget-time") == ""
    )
    # a failed seed is done: no wanting a seed the race will not train
    race.entrants["trial-41"] = Entrant("trial-41", 6689, 0.9912, vals=(0.9908, 0.9908), failed=1)
    race.entrants["zoo-001"] = Entrant("zoo-001", 9798, 0.99, True, vals=(0.9897,) * 3)
    race.rules = RaceRules(start=2, least=3, most=3)
    (s,) = race.standings()
    assert held_back(race, s, s.verdicts[0], "--budget-time") == ""
