"""Candidate sizes assigned over the cap (search.sizing), and the per-band counts a search
reports (reports.sizes)."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from budgetnas.reports.front.sizes import band_edges, size_bands, size_table, sizes_line
from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.sampling.samplers import make_sampler
from budgetnas.search.sampling.sizing import (
    BLOCK,
    FRACTION_ATTR,
    SLOT_ATTR,
    TOP_BAND,
    assign_size,
    size_fraction,
    strata,
)
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import open_run
from tests.helpers import search_args

runner = CliRunner()

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _stratum(fraction: float, bounds: list[tuple[float, float]]) -> int:
    (index,) = [i for i, (lo, hi) in enumerate(bounds) if lo <= math.log(fraction) <= hi]
    return index


def test_strata_put_half_of_each_block_in_the_top_band():
    bounds = strata(0.3)
    top = -math.log(TOP_BAND)
    assert len(bounds) == BLOCK == 6
    assert bounds[0][1] == 0.0 and bounds[-1][0] == pytest.approx(math.log(0.3))
    for (_, high), (low, _) in zip(bounds[1:], bounds, strict=False):
        assert high == pytest.approx(low)  # contiguous, top first
    assert [lo >= top - 1e-12 for lo, _ in bounds] == [True] * 3 + [False] * 3
    widths = [hi - lo for lo, hi in bounds]
    assert widths[:3] == pytest.approx([math.log(TOP_BAND) / 3] * 3)
    assert widths[3:] == pytest.approx([(top - math.log(0.3)) / 3] * 3)
    # a space whose smallest target is already in the top band: six strata over it
    step = -math.log(0.8) / 6
    flat = [x for stratum in strata(0.8) for x in stratum]
    assert flat == pytest.approx([x for i in range(6) for x in (-(i + 1) * step, -i * step)])
    assert strata(1.0) == [(0.0, 0.0)] * 6


def test_each_block_of_slots_covers_every_stratum_once():
    bounds = strata(0.3)
    fractions = [size_fraction(k, seed=2, cap=10_000, min_fraction=0.3) for k in range(60)]
    for block in range(10):
        chunk = fractions[block * 6 : block * 6 + 6]
        assert sorted(_stratum(f, bounds) for f in chunk) == list(range(6))
        assert sum(f >= 1 / TOP_BAND for f in chunk) == 3
    assert all(0.3 <= f <= 1.0 for f in fractions)
    # a pure function of (seed, cap, slot); another cap or seed, another sequence
    assert fractions == [size_fraction(k, seed=2, cap=10_000, min_fraction=0.3) for k in range(60)]
    assert fractions != [size_fraction(k, seed=2, cap=5_000, min_fraction=0.3) for k in range(60)]
    assert fractions != [size_fraction(k, seed=3, cap=10_000, min_fraction=0.3) for k in range(60)]
    assert size_fraction(0, seed=0, cap=7, min_fraction=1.0) == 1.0


def _trial(study: optuna.Study, cap: int, **attrs) -> optuna.Trial:
    trial = study.ask()
    trial.set_user_attr("cap", cap)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial


def test_slots_are_taken_in_order_per_cap_and_a_failed_trial_frees_its_own():
    study = optuna.create_study()

    def assign(cap: int, **attrs) -> tuple[int, float]:
        trial = _trial(study, cap, **attrs)
        fraction = assign_size(trial, cap=cap, seed=5, min_fraction=0.3)
        assert trial.user_attrs[FRACTION_ATTR] == fraction
        return trial.user_attrs[SLOT_ATTR], fraction

    def expected(slot: int, cap: int) -> float:
        return size_fraction(slot, seed=5, cap=cap, min_fraction=0.3)

    assert assign(10_000) == (0, expected(0, 10_000))
    assert assign(10_000) == (1, expected(1, 10_000))
    assert assign(5_000) == (0, expected(0, 5_000))  # each cap its own sequence
    failed = _trial(study, 10_000)
    assign_size(failed, cap=10_000, seed=5, min_fraction=0.3)
    assert failed.user_attrs[SLOT_ATTR] == 2
    study.tell(failed, state=TrialState.FAIL)
    assert assign(10_000) == (2, expected(2, 10_000))  # the failed trial's slot again
    assert assign(10_000) == (3, expected(3, 10_000))
    # a queued copy keeps the size it was given
    assert assign(10_000, size_slot=2, size_fraction=0.5) == (2, 0.5)


def test_two_trials_that_both_found_the_same_free_slot_end_with_distinct_slots(monkeypatch):
    """Two processes read the study at once and both find slot 0 free: each writes it, reads
    it back, and the earlier trial keeps it; the later one takes the next free slot (a
    barrier holds each first write of a slot until both have read the study)."""
    import threading

    from budgetnas.search.sampling import sizing

    monkeypatch.setattr(sizing, "SETTLE_S", 0.05, raising=False)
    study = optuna.create_study()
    first, second = _trial(study, 10_000), _trial(study, 10_000)
    storage = study._storage
    write = storage.set_trial_user_attr
    barrier = threading.Barrier(2, timeout=10)
    waited: set[int] = set()

    def held_write(trial_id, key, value):
        if key == SLOT_ATTR and trial_id not in waited:
            waited.add(trial_id)
            barrier.wait()  # both trials have read the study and chosen a slot
        write(trial_id, key, value)

    monkeypatch.setattr(storage, "set_trial_user_attr", held_write)
    fractions: dict[int, float] = {}

    def assign(trial):
        fractions[trial.number] = assign_size(trial, cap=10_000, seed=5, min_fraction=0.3)

    threads = [threading.Thread(target=assign, args=(t,)) for t in (second, first)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    slots = [study.trials[n].user_attrs[SLOT_ATTR] for n in (first.number, second.number)]
    assert slots == [0, 1]  # the earlier trial keeps the slot both chose
    assert fractions == {
        first.number: size_fraction(0, seed=5, cap=10_000, min_fraction=0.3),
        second.number: size_fraction(1, seed=5, cap=10_000, min_fraction=0.3),
    }


def test_a_rejected_candidates_slot_goes_to_the_next_candidate():
    """A candidate rejected before training (over a MACs or activation cap) holds no slot:
    the next candidate gets its slot and so its size target, and the spread holds over the
    candidates trained, not only on average."""
    study = optuna.create_study()
    trained = _trial(study, 10_000)
    assign_size(trained, cap=10_000, seed=5, min_fraction=0.3)
    rejected = _trial(study, 10_000)
    target = assign_size(rejected, cap=10_000, seed=5, min_fraction=0.3)
    assert rejected.user_attrs[SLOT_ATTR] == 1
    rejected.set_user_attr("rejected", "MACs 2,000,000 over the cap 1,000,000")
    study.tell(rejected, state=TrialState.PRUNED)
    following = _trial(study, 10_000)
    assert assign_size(following, cap=10_000, seed=5, min_fraction=0.3) == target
    assert following.user_attrs[SLOT_ATTR] == 1
    assert assign_size(_trial(study, 10_000), cap=10_000, seed=5, min_fraction=0.3) == (
        size_fraction(2, seed=5, cap=10_000, min_fraction=0.3)
    )


def test_the_sampler_answers_size_with_the_assigned_value_and_keeps_its_distribution():
    """After TPE's start-up trials too (relative sampling with groups), and with NSGA-II."""
    for name in ("motpe", "nsga2"):
        study = optuna.create_study(
            directions=["maximize", "minimize"], sampler=make_sampler(name, 0, "spread")
        )
        for k in range(14):
            trial = study.ask()
            trial.set_user_attr("rung", 0)
            trial.set_user_attr(FRACTION_ATTR, 0.3 + 0.05 * k)
            x = trial.suggest_float("x", 0.0, 1.0)
            assert trial.suggest_float("size", 0.3, 1.0) == pytest.approx(0.3 + 0.05 * k)
            study.tell(trial, (x, 0.3 + 0.05 * k))
        sizes = {t.distributions["size"] for t in study.trials}
        assert sizes == {optuna.distributions.FloatDistribution(0.3, 1.0)}
    # without assigned sizes the sampler samples "size" itself
    study = optuna.create_study(sampler=make_sampler("tpe", 0))
    trial = study.ask()
    trial.set_user_attr(FRACTION_ATTR, 0.5)
    assert trial.suggest_float("size", 0.3, 1.0) != 0.5


def test_sizing_is_a_setting_and_old_runs_keep_the_sampler_choosing(tmp_path):
    assert SearchConfig(out=str(tmp_path), caps=(5000,)).sizing == "aimed"
    with pytest.raises(SearchError, match="unknown sizing 'even'; choose aimed, spread, sampler"):
        SearchConfig(out=str(tmp_path), caps=(5000,), sizing="even")
    old = SearchConfig(out=str(tmp_path), caps=(5000,), sizing="sampler").to_dict()
    del old["sizing"]
    restored = SearchConfig.from_dict(old)
    assert restored.sizing == "sampler"
    assert "sizing" not in restored.fingerprint()  # an old run's fingerprint is unchanged
    aimed = SearchConfig(out=str(tmp_path), caps=(5000,))
    assert aimed.fingerprint()["sizing"] == "aimed"
    spread = SearchConfig(out=str(tmp_path), caps=(5000,), sizing="spread")
    assert spread.fingerprint()["sizing"] == "spread"  # a run made before aims keeps its own


def test_band_edges_and_counts_are_exact():
    assert band_edges(cap=10_000, min_fraction=0.3) == pytest.approx(
        [3000, 4444.44, 6666.67, 10_000], abs=0.01
    )
    # the last band spans at most 1.5 * 1.05: 0.29 of the cap is one band below 4,444
    assert band_edges(cap=10_000, min_fraction=0.29) == pytest.approx(
        [2900, 4444.44, 6666.67, 10_000], abs=0.01
    )
    assert band_edges(cap=10_000, min_fraction=0.2) == pytest.approx(
        [2000, 2962.96, 4444.44, 6666.67, 10_000], abs=0.01
    )
    assert band_edges(cap=10_000, min_fraction=1.0) == [10_000]
    params = [2_000, 3_000, 4_444, 4_445, 6_666, 6_667, 9_999, 10_000, 10_001]
    bands = size_bands(params, cap=10_000, min_fraction=0.3)
    assert [(b.label(), b.count) for b in bands] == [
        ("<3.0K", 1),
        ("3.0-4.4K", 2),
        ("4.4-6.7K", 2),
        ("6.7-10K", 3),
    ]
    assert [b.label() for b in size_bands([], cap=1_000_000, min_fraction=0.3)] == [
        "300-444K",
        "444-667K",
        "667K-1.0M",
    ]


def _frame(rows: list[dict]) -> pd.DataFrame:
    base = {"reference": None, "promoted_from": None, "rung": 0, "state": "complete"}
    return pd.DataFrame([{**base, **row} for row in rows])


def test_only_sampled_candidates_are_counted_per_cap_of_a_ladder():
    df = _frame(
        [
            {"params": 9_000, "cap": 10_000},
            {"params": 4_000, "cap": 10_000},
            {"params": 4_900, "cap": 5_000},
            {"params": 9_500, "cap": 10_000, "reference": "001"},
            {"params": 9_000, "cap": 10_000, "promoted_from": 0, "rung": 1},
            {"params": 12_000, "cap": 10_000, "state": "rejected"},
            {"params": 8_000, "cap": None},  # stored without a cap: the run's largest
        ]
    )
    table = size_table(df, caps=(5_000, 10_000), min_fraction=0.3)
    assert list(table["candidates"]) == [0, 0, 1, 1, 0, 2]
    assert sizes_line(table) == (
        "sizes: under 5.0K: 1.5-2.2K: 0 · 2.2-3.3K: 0 · 3.3-5.0K: 1; "
        "under 10K: 3.0-4.4K: 1 · 4.4-6.7K: 0 · 6.7-10K: 2"
    )
    one = size_table(df, caps=(10_000,), min_fraction=0.3)
    assert sizes_line(one) == "sizes: 3.0-4.4K: 1 · 4.4-6.7K: 0 · 6.7-10K: 2"  # not the 5K one


@pytest.mark.slow
def test_a_search_gives_the_top_band_its_share(tmp_path, synthetic_root):
    """Six candidates (one block): three sized in the top band, their sizes the ones assigned;
    the last lines and the report count them per band."""
    run = tmp_path / "run"
    args = search_args(synthetic_root, run, "--trials", "6", "--references", "none", "--rungs", "1")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    _, study = open_run(run)
    sampled = [t for t in study.trials if t.user_attrs.get("spec")]
    assert len(sampled) == 6
    fractions = [t.user_attrs[FRACTION_ATTR] for t in sampled]
    assert [t.params["size"] for t in sampled] == fractions
    assert sorted(t.user_attrs[SLOT_ATTR] for t in sampled) == list(range(6))
    assert sum(f >= 1 / TOP_BAND for f in fractions) == 3
    top = [t.user_attrs["params"] for t in sampled if t.user_attrs["params"] >= 5_000 / TOP_BAND]
    assert len(top) >= 2  # a network fills its target up to a width's rounding
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("sizes: ")]
    assert line.startswith("sizes: 1.5-2.2K: ") and line.endswith(f"3.3-5.0K: {len(top)}")
    assert "<h2>Candidates per size band</h2>" in (run / "report.html").read_text()


def test_the_sizes_line_counts_each_trained_candidate_once():
    """A failed candidate trained nothing to count, and an interrupted one's queued copy is
    the same candidate: only the finished trials (complete or pruned) are counted."""
    df = _frame(
        [
            {"params": 9_000, "cap": 10_000},
            {"params": 8_000, "cap": 10_000, "state": "failed"},  # interrupted ...
            {"params": 8_000, "cap": 10_000},  # ... and its queued copy, trained
            {"params": 7_000, "cap": 10_000, "state": "failed"},  # failed on its own
            {"params": 4_000, "cap": 10_000, "state": "pruned"},
            {"params": 5_000, "cap": 10_000, "state": "running"},
        ]
    )
    table = size_table(df, caps=(10_000,), min_fraction=0.3)
    assert sizes_line(table) == "sizes: 3.0-4.4K: 1 · 4.4-6.7K: 0 · 6.7-10K: 2"
