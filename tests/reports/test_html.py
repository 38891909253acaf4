"""What the report draws and prints, computed before it is drawn."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from budgetnas.reports.page.figures import ERROR_FLOOR, error_range, pareto_figure
from budgetnas.reports.page.run import _row
from budgetnas.search.units import duration
from budgetnas.search.verification.records import Fidelity, SeedRun, Verified


def _rows(accs, params=None, reference=None):
    n = len(accs)
    return pd.DataFrame(
        {
            "number": range(n),
            "state": "complete",
            "params": params or [1000 * (i + 1) for i in range(n)],
            "val_acc": accs,
            "reference": [reference] * n,
            "rung": 0,
        }
    )


def test_the_error_axis_is_scaled_to_the_front_and_the_references():
    front = _rows([0.990, 0.993, 0.994])
    refs = _rows([0.980], reference="001")
    lo, hi = error_range(front, refs)
    assert lo == pytest.approx(0.006 / 1.5) and hi == pytest.approx(0.02 * 3)
    # a tenth of a point between front members is a visible step on the log axis
    assert (0.007 - 0.006) / 0.006 > 0.1
    assert error_range(_rows([1.0]), refs.iloc[:0]) == (ERROR_FLOOR / 1.5, ERROR_FLOOR * 3)
    assert error_range(front.iloc[:0], refs.iloc[:0]) == (ERROR_FLOOR, 1.0)


def test_completed_trials_far_behind_are_left_out_and_counted():
    df = pd.concat([_rows([0.99, 0.995, 0.60])], ignore_index=True)
    df["number"] = range(3)
    for col, value in {
        "macs": 1,
        "act_f32_bytes": 4,
        "act_int8_bytes": 1,
        "epochs": 1,
        "summary": "s",
        "promoted_from": None,
    }.items():
        df[col] = value
    front = df.iloc[:2]
    fig = pareto_figure(df, front, cap=10_000)
    (done,) = [t for t in fig.data if t.name == "completed trials"]
    assert list(done.x) == [1000, 2000]  # the 60% one is off the scale
    assert "1 completed trial(s) above 3.0% error not shown" in fig.layout.title.text
    assert fig.layout.yaxis.type == "log"


@pytest.mark.parametrize(
    "seconds, text", [(24.4, "24 s"), (59.6, "60 s"), (90, "1.5 min"), (5400, "1.5 h")]
)
def test_durations_read_as_people_say_them(seconds, text):
    assert duration(seconds) == text


def test_a_verified_row_counts_and_lists_its_seeds():
    runs = [SeedRun(s, 0.9, 0.91, 1, 12.0, "cpu") for s in (1, 2, 3)]
    fid = Fidelity(1, 100, {"optimizer": "sgd", "lr": 0.1, "batch_size": 50})
    v = Verified("trial-7", 12345, "{}", {}, 0.9, fid, runs)
    row = _row(v)
    assert (row["network"], row["params"], row["seeds"]) == ("trial 7", "12,345", "3 (1, 2, 3)")
    assert row["train time per seed"] == "12 s"


def test_a_verified_row_times_only_the_seeds_trained_here():
    """A seed reused from the results cache took no time in this run: the time per seed is
    the mean of the seeds trained here, and says when every seed came from the cache."""
    runs = [
        SeedRun(1, 0.9, 0.91, 1, 10.0, "cpu"),
        SeedRun(2, 0.9, 0.91, 1, 14.0, "cpu"),
        SeedRun(3, 0.9, 0.91, 1, 90.0, "cpu", cached=True),
    ]
    fid = Fidelity(1, 100, {"optimizer": "sgd", "lr": 0.1, "batch_size": 50})
    row = _row(Verified("trial-7", 12345, "{}", {}, 0.9, fid, runs))
    assert (row["train time per seed"], row["cached seeds"]) == ("12 s", "3")
    cached = [replace(r, cached=True) for r in runs]
    row = _row(Verified("trial-7", 12345, "{}", {}, 0.9, fid, cached))
    assert row["train time per seed"] == "- (all cached)"


def _study(*trials):
    """An in-memory study of (number's state, user attributes) in order."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(directions=["maximize", "minimize"])
    for state, attrs in trials:
        done = state == TrialState.COMPLETE
        study.add_trial(
            create_trial(
                state=state,
                values=[0.9, 1000.0] if done else None,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                user_attrs={"params": 1000, **attrs},
            )
        )
    return study


def test_the_counts_include_every_rung_and_say_how_each_ended():
    """The header of report.html and the end-of-search summary count the promotions too: a
    promotion cut at the target rung is a pruned trial there, and failures are per rung."""
    from optuna.trial import TrialState

    from budgetnas.search.study.runs import counts_text, summary_counts

    C, P, F = TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL
    nan = {"error": "TrainingError: loss became nan"}
    study = _study(
        (C, {"rung": 0}),
        (C, {"rung": 0}),
        (P, {"rung": 0, "val_curve": [0.5]}),
        (C, {"rung": 0, "duplicate_of": 0}),
        (P, {"rung": 0, "rejected": "12,000 MACs > 10,000", "rejected_by": "macs"}),
        (F, {"rung": 0, **nan}),
        (C, {"rung": 1, "promoted_from": 0}),  # 6
        (F, {"rung": 1, "promoted_from": 1, "interrupted": "interrupted (Ctrl-C)"}),
        (P, {"rung": 1, "promoted_from": 1, "val_curve": [0.6]}),  # its copy, cut
        (P, {"rung": 2, "promoted_from": 6, "val_curve": [0.7]}),  # cut at the target
        (C, {"rung": 0, "reference": "001"}),
        (F, {"rung": 1, "reference": "001", **nan}),
    )
    counts = summary_counts(study)
    assert [(r["trained"], r["complete"], r["pruned"], r["failed"]) for r in counts["rungs"]] == [
        (4, 3, 1, 1),
        (2, 1, 1, 1),
        (1, 0, 1, 0),
    ]
    assert (counts["failed"], counts["interrupted"]) == (2, 1)
    assert counts_text(counts, rungs=3) == (
        "candidates: 4 sampled (3 complete, 1 pruned; 1 reused), 1 rejected before training "
        "(16.7% of the candidates sampled; 1 over the macs cap); promoted: 2 to rung 1 "
        "(1 complete, 1 pruned), 1 to rung 2 (0 complete, 1 pruned); 2 failed (1 at rung 0, "
        "1 at rung 1); 1 interrupted; 1 reference network runs (1 at rung 0)"
    )
    # nothing promoted yet: said so, not an empty list
    early = summary_counts(_study((C, {"rung": 0}), (F, {"rung": 0, **nan})))
    assert counts_text(early, rungs=2) == (
        "candidates: 1 sampled (1 complete, 0 pruned; 0 reused), 0 rejected before training "
        "(0.0% of the candidates sampled); promoted: none; 1 failed (1 at rung 0); "
        "0 reference network runs"
    )


def test_reference_runs_are_counted_at_the_rungs_they_ran_at():
    """Three seed networks trained at the target only (a time budget trimmed them) are three
    runs at the target, not one at each of three rungs."""
    from optuna.trial import TrialState

    from budgetnas.search.study.runs import counts_text, summary_counts

    C = TrialState.COMPLETE
    at_target = summary_counts(_study(*[(C, {"rung": 2, "reference": k}) for k in "abc"]))
    assert at_target["reference_rungs"] == {2: 3}
    assert counts_text(at_target, rungs=3).endswith(
        "; 3 reference network runs (3 at rung 2, the target)"
    )
    every = summary_counts(
        _study(*[(C, {"rung": r, "reference": k}) for k in "ab" for r in range(3)])
    )
    assert counts_text(every, rungs=3).endswith("; 6 reference network runs (2 at each of 3 rungs)")
    uneven = summary_counts(
        _study(
            (C, {"rung": 0, "reference": "a"}),
            (C, {"rung": 2, "reference": "a"}),
            (C, {"rung": 2, "reference": "b"}),
        )
    )
    assert counts_text(uneven, rungs=3).endswith(
        "; 3 reference network runs (1 at rung 0, 2 at rung 2, the target)"
    )


def test_pareto_csv_lists_the_verified_networks_off_the_front():
    """The race's answer may be off the front (an aim's best): pareto.csv lists every
    searched network verified at the target, front or not, with its verified readings."""
    from budgetnas.reports.page.tables import pareto_csv

    trials = pd.DataFrame(
        {
            "number": [2, 3, 4, 5],
            "params": [3138, 6145, 6589, 7000],
            "val_acc": [0.3, 0.8, 0.7, 0.6],
        }
    )
    front, refs = trials[trials["number"].isin([2, 3])], trials.iloc[0:0]
    target = pd.DataFrame(
        {
            "number": [3.0, 4.0, None],
            "reference": [None, None, "001"],
            "seeds": [3, 5, 4],
            "failed": [0, 0, 0],
            "val_mean": [0.71, 0.72, 0.5],
            "val_std": [0.01, 0.02, 0.01],
            "test_mean": [0.7, 0.71, 0.5],
            "test_std": [0.01, 0.01, 0.01],
        }
    )
    rows = pareto_csv(front, refs, target, trials)
    assert rows[["number", "role"]].values.tolist() == [[2, "front"], [3, "front"], [4, "verified"]]
    assert rows["verified_seeds"].tolist()[1:] == [3, 5]  # trial 5, never verified, is not listed
    assert rows["verified_val_mean"].tolist()[2] == 0.72
    assert pd.isna(rows["verified_seeds"].tolist()[0])
