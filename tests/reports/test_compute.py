"""Where the compute went: minutes per kind of work and what reuse saved, computed exactly."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from budgetnas.reports.front.compute import TOTAL, VerifyTraining, compute_line, compute_table
from budgetnas.reports.page.html import write_reports
from budgetnas.reports.page.run import spent_table, verify_trainings
from budgetnas.search.verification.records import FailedSeed, Fidelity, SeedRun, Verified, store
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.zoo import ZOO

C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL
SPEC = ZOO["000"].spec
STATS = analyze(SPEC)
NETWORK = {
    "spec": SPEC.to_json(),
    "summary": SPEC.summary(),
    "params": STATS.params,
    "macs": STATS.macs,
    "activation": activation_memory(SPEC).peak,
}
NAN_ERROR = {"error": "TrainingError: loss became nan"}


def _study(*trials: tuple[TrialState, dict]) -> optuna.Study:
    """An in-memory two-objective study of (state, user attributes), numbered in order."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for state, attrs in trials:
        study.add_trial(
            create_trial(
                state=state,
                values=[0.9, float(STATS.params)] if state == C else None,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs={**NETWORK, "val_curve": [0.9], **attrs},
            )
        )
    return study


def _search_study() -> optuna.Study:
    """Every kind of trial, with known times (seconds)."""
    return _study(
        (C, {"rung": 0, "wall_time_s": 126.0, "train_time_s": 120.0}),  # 0: sampled
        (P, {"rung": 0, "wall_time_s": 60.0}),  # 1: sampled, pruned: its minute counts
        (F, {"rung": 0, "wall_time_s": 30.0, **NAN_ERROR}),  # 2: sampled, failed: counts
        (C, {"rung": 0, "duplicate_of": 0, "train_time_s": 0.0}),  # 3: reuses 0 (126 s)
        (P, {"rung": 0, "rejected": "12,000 > 10,000", "rejected_by": "parameters"}),  # 4
        (C, {"rung": 0, "cached": True, "wall_time_s": 0.5, "train_time_s": 90.0}),  # 5: cache
        (F, {"rung": 0, **NAN_ERROR}),  # 6: failed before training: no time
        (P, {"idle": True}),  # 7: found nothing to do
        (C, {"rung": 1, "promoted_from": 0, "wall_time_s": 240.0, "train_time_s": 230.0}),  # 8
        (P, {"rung": 1, "promoted_from": 5, "wall_time_s": 144.0}),  # 9: promotion, pruned
        (P, {"rung": 1, "promoted_from": 1, "cached": True, "wall_time_s": 0.2}),  # 10: no time
        (C, {"rung": 0, "reference": "001", "wall_time_s": 180.0, "train_time_s": 170.0}),  # 11
        (C, {"rung": 1, "reference": "001", "cached": True, "train_time_s": 300.0}),  # 12
        (F, {"rung": 1, "reference": "001", "wall_time_s": 60.0, "interrupted": "Ctrl-C"}),  # 13
    )


def _verify(study: optuna.Study) -> None:
    """Verify records as ``budgetnas verify`` stores them: trial 0 with a trained and a cached
    seed, reference 001 with a trained and a failed seed (which stores no time)."""
    fid = Fidelity(1, 100, {"optimizer": "sgd", "lr": 0.1, "batch_size": 50})
    front = Verified("trial-0", STATS.params, SPEC.to_json(), {}, 0.9, fid)
    front.runs = [
        SeedRun(1, 0.9, 0.91, 1, 270.0, "cpu"),
        SeedRun(2, 0.9, 0.91, 1, 240.0, "cpu", cached=True),
    ]
    ref = Verified("zoo-001", STATS.params, SPEC.to_json(), {}, None, fid)
    ref.runs = [SeedRun(1, 0.9, 0.91, 1, 90.0, "cpu")]
    ref.failed = [FailedSeed(2, "TrainingError: loss became nan", "cpu")]
    store(study, front)
    store(study, ref)


def _rows(table) -> dict[str, tuple]:
    return {
        r.what: (r.trainings, round(r.minutes, 6), r.share, r.reused, r.saved_minutes)
        for r in table.itertuples()
    }


def test_each_kind_of_work_gets_its_minutes_share_and_reuse():
    study = _search_study()
    _verify(study)
    assert verify_trainings(study) == [
        VerifyTraining(searched=True, train_time_s=270.0, cached=False),
        VerifyTraining(searched=True, train_time_s=240.0, cached=True),
        VerifyTraining(searched=False, train_time_s=90.0, cached=False),
    ]
    table = spent_table(study)
    rows = _rows(table)
    # promotions: the reused one was cut while its cached curve replayed: its cost is unknown
    promotions = rows.pop("promotions")
    assert promotions[:4] == (2, 6.4, pytest.approx(384 / 1200), 1)
    assert math.isnan(promotions[4])
    assert rows == {
        "sampled candidates": (3, 3.6, pytest.approx(216 / 1200), 2, pytest.approx(3.6)),
        "references": (2, 4.0, pytest.approx(240 / 1200), 1, pytest.approx(5.0)),
        "verification of searched networks": (1, 4.5, pytest.approx(270 / 1200), 1, 4.0),
        "verification of references": (1, 1.5, pytest.approx(90 / 1200), 0, 0.0),
        TOTAL: (9, 20.0, 1.0, 5, pytest.approx(12.6)),
    }
    assert table["saved_unknown"].tolist() == [0, 1, 0, 0, 0, 1]
    assert table["share"].iloc[:5].sum() == pytest.approx(1.0)
    assert compute_line(table) == (
        "compute: 20.0 min in all: sampled candidates 3.6 min (18%), promotions 6.4 min (32%), "
        "references 4.0 min (20%), verification 6.0 min (30%); "
        "reused 5 trainings (12.6 min saved; time of 1 not known)"
    )


def test_a_duplicate_saves_what_its_original_cost_even_when_that_was_a_cache_hit():
    table = compute_table(
        _study(
            (C, {"rung": 0, "cached": True, "wall_time_s": 0.1, "train_time_s": 42.0}),
            (C, {"rung": 0, "duplicate_of": 0, "train_time_s": 0.0}),
            (P, {"rung": 0, "wall_time_s": 18.0}),
        ).get_trials(deepcopy=False)
    )
    total = table.set_index("what").loc[TOTAL]
    assert (total["trainings"], total["minutes"], total["reused"]) == (1, 0.3, 2)
    assert total["saved_minutes"] == pytest.approx(84 / 60)
    assert compute_line(table) == (
        "compute: 0.3 min in all: sampled candidates 0.3 min (100%); "
        "reused 2 trainings (1.4 min saved)"
    )


def test_a_search_with_nothing_trained_says_so():
    nothing = compute_table([])
    assert nothing["trainings"].tolist() == [0] * 6
    assert nothing["share"].isna().all()
    assert compute_line(nothing) == "compute: nothing trained yet"
    only_reused = compute_table(
        _study((P, {"rung": 0, "cached": True, "wall_time_s": 0.1})).get_trials(),
        [VerifyTraining(searched=False, train_time_s=12.0, cached=True)],
    )
    assert compute_line(only_reused) == (
        "compute: 0.0 min in all; reused 2 trainings (0.2 min saved; time of 1 not known)"
    )


def test_report_html_shows_where_the_compute_went(tmp_path):
    study = _search_study()
    _verify(study)
    trials = study.get_trials(deepcopy=False)
    write_reports(trials, tmp_path, cap=10_000, dataset="mnist", compute=spent_table(study))
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Where the compute went</h2>" in page
    row = (
        "<td>promotions</td>\n      <td>2</td>\n      <td>6.4</td>\n      <td>32.0%</td>\n"
        "      <td>1</td>\n      <td>-</td>"
    )
    assert row in page
    total = (
        "<td>in all</td>\n      <td>9</td>\n      <td>20.0</td>\n      <td>100.0%</td>\n"
        "      <td>5</td>\n      <td>12.6 (1 not known)</td>"
    )
    assert total in page
    write_reports(trials, tmp_path, cap=10_000, dataset="mnist")  # without: no table
    assert "Where the compute went" not in (tmp_path / "report.html").read_text()


def test_the_total_says_not_known_when_no_reused_trainings_time_is():
    """One cache hit whose time is not known (the pruner cut its replay): the total's saved
    minutes are not known either, not 0.0."""
    import math

    from optuna.trial import TrialState, create_trial

    from budgetnas.reports.front.compute import TOTAL, compute_table

    hit = create_trial(
        state=TrialState.PRUNED,
        user_attrs={"rung": 0, "params": 100, "cached": True, "val_curve": [0.5]},
    )
    table = compute_table([hit])
    total = table[table["what"] == TOTAL].iloc[0]
    assert total["reused"] == 1 and total["saved_unknown"] == 1
    assert math.isnan(total["saved_minutes"])
