"""The yardsticks' share of a time budget: timed before anything is trained, trimmed (rungs,
then seeds) to leave the search the rest, or one line saying what would fit."""

from __future__ import annotations

import pytest

from budgetnas.search.errors import SearchError
from budgetnas.search.pipeline import run_search
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.schedule.yardsticks import (
    Costs,
    Level,
    empty_front_line,
    least_search_seconds,
    levels,
    pending_verification,
    plan_yardsticks,
    yardstick_seconds,
)
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import stored_results
from budgetnas.space.count import count_params
from tests.helpers import quick_config


def _cfg(root, out, **overrides):
    """Two rungs, 1 ep x 667 img -> 2 ep x 1,000 img (the target: 2,000 image-epochs), 2
    verify seeds, one hour, one process."""
    options = dict(
        caps=(10_000,), epochs=2, train_subset=1000, rungs=2, verify_seeds=2, budget_time=3600
    )
    return quick_config(root, out, **{**options, **overrides})


def test_levels_trim_rungs_first_then_seeds(synthetic_root, tmp_path):
    cfg = _cfg(synthetic_root, tmp_path / "r", references="002")
    assert [(r.epochs, r.images) for r in cfg.schedule.rungs] == [(1, 667), (2, 1000)]
    assert levels(cfg) == [Level("all", 2), Level("target", 2), Level("target", 1)]
    costs = Costs({"002": 0.25}, candidate=0.001)
    # every rung (667 + 2,000) and 2 seeds (4,000) image-epochs at 0.25 s an image
    assert yardstick_seconds(cfg, costs, Level("all", 2)) == pytest.approx(0.25 * 6667)
    assert yardstick_seconds(cfg, costs, Level("target", 1)) == pytest.approx(0.25 * 4000)
    # 3 candidates at rung 0 (667 each), 1 promoted (2,000), verified with 2 seeds (4,000)
    assert least_search_seconds(cfg, costs, verify_seeds=2) == pytest.approx(0.001 * 8001)


def test_yardsticks_that_fit_a_third_are_not_trimmed(synthetic_root, tmp_path):
    cfg = _cfg(synthetic_root, tmp_path / "r", references="002")
    same, note = plan_yardsticks(cfg, Costs({"002": 0.17}, candidate=0.001))  # 1,133 s
    assert same is cfg and note is None


def test_yardsticks_over_a_third_are_trimmed_and_the_note_says_how(synthetic_root, tmp_path):
    """Every rung with 2 seeds: 1,667 s; the target with 2 seeds: 1,500 s; with 1: 1,000 s,
    the first under a third of the hour (1,200 s)."""
    cfg = _cfg(synthetic_root, tmp_path / "r", references="002")
    trimmed, note = plan_yardsticks(cfg, Costs({"002": 0.25}, candidate=0.001))
    assert (trimmed.reference_rungs, trimmed.seeds_of_references) == ("target", 1)
    assert trimmed.verify_seeds == 2  # the front keeps its seeds
    assert note == (
        "note: the 1 seed network trained at every rung, verified with 2 seeds would take 46% "
        "of --budget-time 1h (about 27.8 min): each is trained at the target only, verified "
        "with 1 seed (about 16.7 min), so that the search has the rest; all of it with "
        "--budget-time 1h24m"
    )


def test_a_budget_that_holds_no_candidate_beside_its_yardsticks_is_one_line(
    synthetic_root, tmp_path
):
    """The least yardsticks (the target, 1 seed: 4,000 + 2,000 s) and the least search do not
    fit in an hour; seed 002 alone would, and so would 1h52m (the least of both, and a
    tenth)."""
    cfg = _cfg(synthetic_root, tmp_path / "r", references="001,002")
    costs = Costs({"001": 1.0, "002": 0.5}, candidate=0.01)
    with pytest.raises(SearchError) as err:
        plan_yardsticks(cfg, costs)
    assert str(err.value) == (
        "--budget-time 1h cannot fit one candidate beside its yardsticks: the 2 seed networks "
        "take about 1.7 h at the least (at the target only, verified with 1 seed), a search of "
        "3 candidates up to the target about 1.3 min (timed on this machine with 1 trial "
        "process); would fit: --references 002, or --references none, or --budget-time 1h52m"
    )


def test_the_search_stops_before_it_trains_or_writes_anything(
    synthetic_root, tmp_path, monkeypatch
):
    import budgetnas.search.study.driver as driver

    monkeypatch.setattr(driver, "time_costs", lambda *a, **k: Costs({"002": 10.0}, candidate=0.01))
    cfg = _cfg(synthetic_root, tmp_path / "run", references="002")
    with pytest.raises(SearchError, match="cannot fit one candidate beside its yardsticks"):
        run_search(cfg, quiet=True)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_trimmed_yardsticks_train_at_the_target_and_verify_with_their_seeds(
    synthetic_root, tmp_path, monkeypatch
):
    """Trimmed to the target with 1 seed: seed 002 is trained at rung 1 only and enters the
    race with 1 seed (more only while it is level with the leader, up to --race-seeds); the
    front with its 2; the run keeps the trim on --resume (its config)."""
    import budgetnas.search.study.driver as driver

    monkeypatch.setattr(driver, "time_costs", lambda *a, **k: Costs({"002": 0.25}, candidate=0.001))
    cfg = _cfg(synthetic_root, tmp_path / "run", references="002", trials=3)
    run_search(cfg, quiet=True)
    stored, study = open_run(tmp_path / "run")
    assert (stored.reference_rungs, stored.reference_seeds) == ("target", 1)
    refs = [rung_of(t) for t in study.trials if t.user_attrs.get("reference")]
    assert refs == [1]
    assert study.user_attrs["reference_weight"] == {"002": pytest.approx(250.0)}
    results = {v.key: v for v in stored_results(study).values()}
    seeds = [r.seed for r in results["zoo-002"].runs]
    assert seeds == list(range(1, len(seeds) + 1)) and 1 <= len(seeds) <= stored.race_seeds
    searched = [v for v in results.values() if v.searched]
    # the race: every searched network starts with the front's 2 seeds
    assert searched and all([r.seed for r in v.runs][:2] == [1, 2] for v in searched)


def test_timing_draws_candidates_without_a_word_from_optuna(synthetic_root, tmp_path, capfd):
    from budgetnas.search.schedule.yardsticks import probe_candidates

    cfg = _cfg(synthetic_root, tmp_path / "r", references="002")
    specs = probe_candidates(cfg)
    assert len(specs) == 3 and all(count_params(s) <= 10_000 for s in specs)
    assert "A new study created" not in capfd.readouterr().err


def test_cached_trainings_cost_nothing_but_do_not_change_the_plan(synthetic_root, tmp_path):
    """What the results cache holds is free: yardsticks that would not fit beside the least
    search fit when the cache holds them (a second run of the same command), and the level is
    the one the same command planned without the cache (so it reuses every training)."""
    cfg = _cfg(synthetic_root, tmp_path / "r", references="001,002")
    held = frozenset({("rung", 1), ("seed", 1)})  # what the least level trains
    costs = Costs({"001": 1.0, "002": 0.5}, candidate=0.01, held={"001": held, "002": held})
    assert yardstick_seconds(cfg, costs, Level("target", 1)) == 0.0
    assert yardstick_seconds(cfg, costs, Level("target", 2)) == pytest.approx(1.5 * 2000)
    trimmed, note = plan_yardsticks(cfg, costs)
    assert (trimmed.reference_rungs, trimmed.seeds_of_references) == ("target", 1)
    assert note is not None and "verified with 1 seed (all of it in the results cache: none" in note


def test_a_search_that_sampled_nothing_says_what_buys_candidates(synthetic_root, tmp_path):
    """Trials slower than they were timed (another job on the machine) can close sampling
    before the first candidate: the last line says so, and what to change."""
    timed = _cfg(synthetic_root, tmp_path / "r", references="002", budget_time=90)
    line = empty_front_line(timed, sampled=0)
    assert line.startswith("no candidate was sampled: ")
    assert "--budget-time 90s" in line and "fewer --references" in line
    # candidates that did not reach the target, or a search without a time budget: as before
    nothing = "no candidate completed the target rung: nothing to verify"
    assert empty_front_line(timed, sampled=3) == nothing
    assert empty_front_line(_cfg(synthetic_root, tmp_path / "s", budget_time=None), 0) == nothing


def test_a_richer_level_the_cache_holds_whole_is_taken(synthetic_root, tmp_path):
    """The same command planned the target with 1 seed, but the cache holds each seed
    network at the target with both seeds (an earlier run that had more time): that level
    costs nothing, so the yardsticks are verified with 2 seeds."""
    cfg = _cfg(synthetic_root, tmp_path / "r", references="001,002")
    held = frozenset({("rung", 1), ("seed", 1), ("seed", 2)})
    costs = Costs({"001": 1.0, "002": 0.5}, candidate=0.01, held={"001": held, "002": held})
    trimmed, note = plan_yardsticks(cfg, costs)
    assert (trimmed.reference_rungs, trimmed.seeds_of_references) == ("target", 2)
    assert (
        note is not None and "verified with 2 seeds (all of it in the results cache: none" in note
    )


def test_the_time_budget_keeps_no_time_for_a_verification_the_cache_holds(synthetic_root, tmp_path):
    """Seed 001's verify seed 1 is cached, seed 002's is not (at half 001's rate): a third of
    the references' verification is still to train; all of it cached, none. The plan of one
    more candidate: 667 + 2,000 image-epochs, its verification 2 x 2,000 (the best under
    each of the two aims, 70% of seed 001's and seed 002's parameters, is that same network:
    one is expected at the target), and the references' 2 x 1 seed x 2,000 x their weight (100)
    x that share."""
    from budgetnas.search.study.timing import plan

    cfg = _cfg(synthetic_root, tmp_path / "r", references="001,002", reference_seeds=1)
    rates, held = {"001": 1.0, "002": 0.5}, frozenset({("seed", 1)})
    assert pending_verification(cfg, rates, {"001": held}) == pytest.approx(1 / 3)
    assert pending_verification(cfg, rates, {"001": held, "002": held}) == 0
    assert pending_verification(cfg, rates, {}) == 1.0
    assert cfg.schedule.lines == (5_971, 6_858)
    own = 667 + 2000 + 2 * 2000
    assert plan(cfg, reference_weight=100.0).work([], extra=1) == own + 2 * 2000 * 100
    assert plan(cfg, reference_weight=100.0, reference_pending=0.0).work([], extra=1) == own
    third = plan(cfg, reference_weight=100.0, reference_pending=1 / 3)
    assert third.work([], extra=1) == own + round(2 * 2000 * 100 / 3)


def test_the_search_keeps_the_share_on_its_study_and_weighs_it_again_on_resume(
    synthetic_root, tmp_path, monkeypatch
):
    """A new search stores the share its start found (here: the cache holds every
    verification, 0) and the time budget of every process reads it; a resume looks again,
    with its own cache (here none: all of it is to train, 1)."""
    import budgetnas.search.study.driver as driver
    from budgetnas.search.study.runs import read_config

    held = frozenset({("rung", 0), ("rung", 1), ("seed", 1), ("seed", 2)})
    costs = Costs({"002": 0.01}, candidate=0.001, held={"002": held})
    monkeypatch.setattr(driver, "time_costs", lambda *a, **k: costs)
    seen = []

    class Stop(Exception):
        pass

    def drive(cfg, study, *a, **k):
        seen.append(driver.time_budget(cfg, study).plan.reference_pending)
        raise Stop

    monkeypatch.setattr(driver, "_drive", drive)
    cfg = _cfg(synthetic_root, tmp_path / "run", references="002")
    with pytest.raises(Stop):
        run_search(cfg, quiet=True)
    with pytest.raises(Stop):
        run_search(read_config(tmp_path / "run"), resume=True, quiet=True, cache=None)
    assert seen == [{"002": 0.0}, {"002": 1.0}]
