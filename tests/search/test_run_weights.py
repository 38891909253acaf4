"""The weights a run keeps: at its end a search drops the weights of trials that can no longer
be handed back (off every front, not verified, no seed network), and export still ships the
answer and every front member with the weights it shipped before."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.cli import app
from budgetnas.search.handback.run_weights import kept_trials
from budgetnas.search.handback.weights import best_weights, choose_network, weight_choices
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import stored_results
from tests.helpers import cli_error, search_args

runner = CliRunner()


def _trial(number, params, acc, *, rung=0, state=TrialState.COMPLETE, **attrs):
    user_attrs = {
        "params": params,
        "rung": rung,
        "val_curve": [acc],
        "summary": "s",
        "macs": 1,
        "activation": 1,
        "weights": f"weights/trial-{number:05d}.pt",
        **attrs,
    }
    if state != TrialState.COMPLETE:
        return create_trial(state=state, user_attrs=user_attrs)
    return create_trial(state=state, values=[acc], user_attrs=user_attrs)


def test_the_weights_kept_are_those_a_user_can_still_be_handed():
    study = optuna.create_study(direction="maximize")
    trials = [
        _trial(0, 1000, 0.50),  # rung 0 front
        _trial(1, 2000, 0.40),  # dominated by 0, verified
        _trial(2, 3000, 0.60),  # rung 0 front, promoted to rung 1 (5)
        _trial(3, 2500, 0.30),  # dominated at rung 0: dropped
        _trial(4, 9000, 0.70, reference="002"),  # a seed network
        _trial(5, 3000, 0.70, rung=1, promoted_from=2),  # rung 1 front
        _trial(6, 1000, 0.30, rung=1, promoted_from=0),  # rung 1 front (the smallest)
        _trial(7, 2000, 0.20, rung=1, promoted_from=1),  # dominated at rung 1: dropped
        _trial(8, 1000, 0.50, duplicate_of=0, weights="weights/trial-00000.pt"),
    ]
    for t in trials:
        study.add_trial(t)
    kept = kept_trials(study.get_trials(deepcopy=False), cap=10_000, verified={"trial-1"})
    assert kept == {0, 1, 2, 4, 5, 6}


@pytest.fixture(scope="module")
def searched(tmp_path_factory, synthetic_root):
    """A search over two rungs with a seed network and one verify seed, through the CLI."""
    out = tmp_path_factory.mktemp("weights") / "run"
    args = search_args(
        synthetic_root,
        out,
        *("--trials", "6", "--train-subset", "600", "--rungs", "2"),
        *("--references", "002", "--verify-seeds", "1", "--pruner", "none"),
        budget="10k",
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    return out, result.stderr


@pytest.mark.slow
def test_a_search_keeps_only_the_weights_it_can_hand_back(searched):
    run, err = searched
    cfg, study = open_run(run)
    trials = study.get_trials(deepcopy=False)
    df = trials_frame(trials)
    fronts = set()
    for rung in sorted(set(df["rung"].dropna())):
        fronts |= set(pareto_front(df, cap=cfg.cap, rung=int(rung))["number"])
    refs = {t.number for t in trials if t.user_attrs.get("reference")}
    verified = {
        int(v.key.removeprefix("trial-")) for v in stored_results(study).values() if v.searched
    }
    kept = {int(n) for n in fronts} | refs | verified
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    kept_files = {t.user_attrs["weights"] for t in done if t.number in kept}
    dropped = {t.user_attrs["weights"] for t in done} - kept_files
    assert dropped, "the search should leave some trial off every front"
    for path in kept_files:
        assert (run / path).is_file(), path
    for path in dropped:
        assert not (run / path).exists(), path
    assert list((run / "weights" / "verify").glob("*.pt"))  # verify seeds: all kept
    (line,) = [line for line in err.splitlines() if line.startswith("weights: ")]
    assert f"dropped those of {len(dropped)} trials" in line
    assert str(run / "weights") in line


@pytest.mark.slow
def test_export_ships_the_answer_and_every_front_member_as_before(searched, tmp_path):
    run, _ = searched
    cfg, study = open_run(run)
    df = trials_frame(study.get_trials(deepcopy=False))
    target = cfg.schedule.target.index
    front = [int(n) for n in pareto_front(df, cap=cfg.cap, rung=target)["number"]]
    assert front
    for number in [None, *front]:
        chosen, _ = choose_network(cfg, study, number)
        recorded = weight_choices(cfg, study, chosen)  # as they were recorded: all of them
        before = best_weights(recorded).path
        args = ["export", str(run), "--out", str(tmp_path / f"n{number}.py")]
        result = runner.invoke(app, [*args] + (["--trial", str(number)] if number else []))
        assert result.exit_code == 0, result.stderr
        kept = [w for w in recorded if (Path(run) / w.path).is_file()]
        assert best_weights(kept).path == before  # the same weights shipped


@pytest.mark.slow
def test_exporting_a_trial_whose_weights_were_dropped_says_what_to_do(searched, tmp_path):
    run, _ = searched
    cfg, study = open_run(run)
    gone = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state == TrialState.COMPLETE
        and not any((run / w.path).is_file() for w in weight_choices(cfg, study, t))
    ]
    assert gone, "some trial's network should have no weights left"
    number = gone[0].number
    args = ["export", str(run), "--out", str(tmp_path / "x.py"), "--trial", str(number)]
    line = cli_error(runner.invoke(app, args))
    assert f"budgetnas verify {run} --trial {number}" in line
