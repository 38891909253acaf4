"""What the report draws and prints, computed before it is drawn."""

from __future__ import annotations

import pandas as pd
import pytest

from budgetnas.reports.html import ERROR_FLOOR, error_range, pareto_figure
from budgetnas.search.reporting import _row, duration
from budgetnas.search.verified import Fidelity, SeedRun, Verified


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
    assert row["train time"] == "36 s"
