"""The progress table: one line per trial of the search, whichever process trained it."""

from __future__ import annotations

import io

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from budgetnas.search.study.progress import Progress


def _add(study: optuna.Study, params: int, acc: float, state=TrialState.COMPLETE, **attrs):
    study.add_trial(
        create_trial(
            state=state,
            values=[acc] if state == TrialState.COMPLETE else None,
            params={"x": 0.5},
            distributions={"x": FloatDistribution(0, 1)},
            user_attrs={"params": params, "val_curve": [acc], "rung": 0, **attrs},
        )
    )
    return study.get_trials(deepcopy=False)[-1]


def _numbers(text: str) -> list[int]:
    return [int(line.split()[0]) for line in text.splitlines()]


def test_trials_of_other_processes_are_printed_once_in_order():
    """``--workers``: this process finished #1 and #4; the others #0, #2 (idle: nothing to
    print) and #3. Every trained trial gets its line once, in order; one that ended before
    this process started (a resumed run's) gets none."""
    study = optuna.create_study(direction="maximize")
    old = _add(study, 1000, 0.5)  # #0: ended before this process started
    out = io.StringIO()
    progress = Progress(total=5, stream=out, before=[old.number])
    _add(study, 1200, 0.6)  # #1: its own, then #2 (idle) and #3 from the other process
    _add(study, 0, 0.0, state=TrialState.PRUNED, idle=True)
    _add(study, 1300, 0.7)
    progress(study, study.trials[1])
    assert _numbers(out.getvalue()) == [1, 3]
    running = study.ask()  # #4 runs elsewhere; #5 is this process's
    mine = _add(study, 1500, 0.8)
    progress(study, mine)
    assert _numbers(out.getvalue()) == [1, 3, 5]
    study.tell(running, 0.9)
    progress.flush(study)
    assert _numbers(out.getvalue()) == [1, 3, 5, 4]
    progress.flush(study)
    assert _numbers(out.getvalue()) == [1, 3, 5, 4]
