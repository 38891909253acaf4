"""The fidelity schedule: the rungs planned, who is promoted, and a search that climbs them."""

from __future__ import annotations

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from budgetnas.search.cli import app
from budgetnas.search.errors import SearchError
from budgetnas.search.pipeline import run_search
from budgetnas.search.schedule.promotion import Schedule, band_ranks, promotion_order, quota
from budgetnas.search.schedule.rungs import (
    DEFAULT_RUNGS,
    MIN_RUNG_STEPS,
    auto_rungs,
    plan_rungs,
    rung_steps,
)
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.options import new_config
from budgetnas.search.study.runs import open_run
from budgetnas.search.verification.records import stored_results
from budgetnas.search.verification.standing import front_to_verify
from tests.helpers import quick_config, search_args

runner = CliRunner()


@pytest.mark.parametrize(
    "epochs, images, rungs, expected",
    [
        (15, 55_000, 3, [(2, 45_833), (5, 55_000), (15, 55_000)]),
        (2, 10_000, 3, [(1, 2_222), (1, 6_667), (2, 10_000)]),
        (1, 55_000, 2, [(1, 18_333), (1, 55_000)]),
        (15, 55_000, 1, [(15, 55_000)]),
    ],
)
def test_rungs_cut_epochs_first_then_images(epochs, images, rungs, expected):
    plan = plan_rungs(epochs=epochs, images=images, rungs=rungs, eta=3)
    assert [(r.epochs, r.images) for r in plan] == expected
    assert [r.index for r in plan] == list(range(rungs))


@pytest.mark.parametrize(
    "epochs, images, pruner, expected",
    [
        (15, 55_000, "banded", (3, None)),
        (2, 6_000, "none", (3, None)),
        (
            3,
            300,
            "banded",
            (2, "the target (3 ep x 300 img) leaves room for 1 cheaper rung at half its cost"),
        ),
        (
            1,
            300,
            "banded",
            (1, "the target (1 ep x 300 img) leaves no room for a cheaper rung at half its cost"),
        ),
        # 500 images -> 600 is a rung: too dear to rank anything cheaply
        (
            1,
            600,
            "banded",
            (1, "the target (1 ep x 600 img) leaves no room for a cheaper rung at half its cost"),
        ),
        (
            2,
            1_000,
            "banded",
            (2, "the target (2 ep x 1,000 img) leaves room for 1 cheaper rung at half its cost"),
        ),
        (15, 55_000, "median", (1, "--pruner median compares trials across fidelities")),
    ],
)
def test_without_rungs_given_a_search_gets_three_or_as_many_as_fit(
    epochs, images, pruner, expected
):
    assert auto_rungs(epochs=epochs, images=images, eta=3, pruner=pruner) == expected


def test_the_default_rungs_are_stored_and_said_when_fewer(tmp_path, synthetic_root):
    # 3 ep x 1,500 img at batch 16: 1 ep x 640 img (40 steps) -> 1 ep x 1,500 img -> target
    roomy = quick_config(
        synthetic_root, tmp_path / "a", epochs=3, train_subset=1500, batch_size=16, trials=1
    )
    assert roomy.rungs == DEFAULT_RUNGS == 3
    assert [(r.epochs, r.images) for r in roomy.schedule.rungs] == [(1, 640), (1, 1500), (3, 1500)]
    assert quick_config(synthetic_root, tmp_path / "b", epochs=2, rungs=1).rungs == 1
    tight = quick_config(synthetic_root, tmp_path / "c", epochs=1, trials=1, verify_seeds=0)
    assert tight.rungs == 1
    args = search_args(synthetic_root, tmp_path / "c", "--trials", "1", "--epochs", "1")
    result = runner.invoke(app, [*args, "--verify-seeds", "0", "--references", "none"])
    assert result.exit_code == 0, result.stderr
    assert (
        "note: the target (1 ep x 300 img) leaves no room for a cheaper rung at half its cost "
        "and of 40 optimizer steps or more: "
        "every candidate at the target (--rungs 1)"
    ) in result.stderr.splitlines()
    stored, _ = open_run(tmp_path / "c")
    assert stored.rungs == 1 and '"rungs": 1' in (tmp_path / "c" / "config.json").read_text()


def test_a_plan_without_room_below_the_target_is_refused():
    with pytest.raises(SearchError, match="leaves no room below the target"):
        plan_rungs(epochs=1, images=900, rungs=3, eta=3)
    with pytest.raises(SearchError, match="--eta must be at least 2"):
        plan_rungs(epochs=3, images=9000, rungs=2, eta=1)


def _trial(number, params, acc, *, rung=0, state=TrialState.COMPLETE, **attrs):
    values = [acc, float(params)] if state == TrialState.COMPLETE else None
    t = create_trial(
        state=state,
        values=values,
        params={"x": 0.5},
        distributions={"x": FloatDistribution(0, 1)},
        user_attrs={"params": params, "rung": rung, **attrs},
    )
    t.number = number
    return t


# (number, params, accuracy): two size bands, 3K and 9K networks
POPULATION = [
    (0, 9000, 0.970),
    (1, 9500, 0.975),
    (2, 8800, 0.960),
    (3, 3000, 0.950),
    (4, 3100, 0.940),
    (5, 2900, 0.955),
]


def test_promotion_ranks_within_size_bands():
    trials = [_trial(*row) for row in POPULATION]
    assert band_ranks(trials) == {0: 1, 1: 0, 2: 2, 3: 1, 4: 2, 5: 0}
    # the best of each band first (band rank 0: #1 and #5), then the second of each band:
    # a 3K network moves up before a third 9K one although its accuracy is lower
    assert [t.number for t in promotion_order(trials)] == [1, 5, 0, 3, 2, 4]


@pytest.mark.parametrize("n, closed, k", [(6, False, 2), (7, False, 2), (7, True, 3), (1, True, 1)])
def test_quota_is_a_third_rounded_down_until_the_rung_closes(n, closed, k):
    assert quota(n, 3, closed=closed) == k


def test_next_job_promotes_the_highest_rung_first_and_never_twice():
    schedule = Schedule(plan_rungs(epochs=9, images=9000, rungs=3, eta=3), eta=3)
    trials = [_trial(*row) for row in POPULATION]

    def job(wanted):
        j = schedule.next_job(trials, trials_wanted=wanted)
        return (j.kind, j.rung, j.source.number if j.source else None)

    assert job(10) == ("promote", 1, 1)  # 6 finished, more to come: 6 // 3 = 2 move up
    trials.append(_trial(6, 9500, 0.99, rung=1, promoted_from=1, candidate=1))
    assert job(10) == ("promote", 1, 5)  # the best 3K network, before a second 9K one
    trials.append(_trial(7, 0, 0, rung=1, state=TrialState.RUNNING, promoted_from=5))
    assert job(10) == ("sample", 0, None)  # the quota is used: sample until 10 at rung 0
    # with 6 wanted, rung 0 is closed: ceil(6 / 3) = 2, used; rung 1 still runs #7
    assert job(6) == ("wait", 0, None)
    trials[-1] = _trial(7, 2900, 0.98, rung=1, promoted_from=5, candidate=5)
    assert job(6) == ("promote", 2, 6)  # rung 1 closed: ceil(2 / 3) = 1 to the target
    trials.append(_trial(8, 9500, 0.99, rung=2, promoted_from=6, candidate=1))
    assert job(6) == ("done", 0, None)
    trials.append(_trial(9, 0, 0, state=TrialState.WAITING, reference="001"))
    assert job(6) == ("queued", 0, None)  # a queued reference runs before anything ends


def test_front_to_verify_keeps_the_ends_and_spreads_the_rest():
    import pandas as pd

    front = pd.DataFrame({"number": list(range(10, 19))})
    assert front_to_verify(front, 5) == [10, 12, 14, 16, 18]
    assert front_to_verify(front.head(3), 5) == [10, 11, 12]


@pytest.fixture(scope="module")
def climbed(tmp_path_factory, synthetic_root):
    """A search of 9 candidates over three rungs (1 ep x 500 img -> 1 ep x 1,000 img ->
    3 ep x 1,000 img), references at 10K, the front verified with 2 new seeds."""
    out = tmp_path_factory.mktemp("rungs") / "run"
    cfg = quick_config(
        synthetic_root,
        out,
        caps=(10_000,),
        trials=9,
        epochs=3,
        train_subset=1000,
        rungs=3,
        pruner="banded",
        verify_seeds=2,
        references="002",
    )
    assert [(r.epochs, r.images) for r in cfg.schedule.rungs] == [(1, 500), (1, 1000), (3, 1000)]
    return run_search(cfg, quiet=True), cfg


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_each_rung_trains_at_its_fidelity(climbed):
    study, cfg = climbed
    for t in study.trials:
        if t.state == TrialState.COMPLETE and not t.user_attrs.get("duplicate_of"):
            rung = cfg.schedule.rungs[rung_of(t)]
            assert t.user_attrs["recipe"]["epochs"] == rung.epochs
            assert len(t.user_attrs["val_curve"]) == rung.epochs
            assert t.user_attrs["train_images"] == rung.images


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_promotions_follow_the_rule_as_it_stood(climbed):
    """Which trials move up: each promotion was, when its trial started, among the top
    third (by band rank) of what had finished at the rung below; nothing is promoted twice,
    and the sampler's trials are the 9 at rung 0."""
    study, cfg = climbed
    searched = [t for t in study.trials if not t.user_attrs.get("reference")]
    assert sum(1 for t in searched if rung_of(t) == 0) == 9
    promoted = [t for t in searched if rung_of(t) > 0]
    assert {rung_of(t) for t in promoted} == {1, 2}
    sources = [t.user_attrs["promoted_from"] for t in promoted]
    assert len(sources) == len(set(sources))
    for t in promoted:
        source = study.trials[t.user_attrs["promoted_from"]]
        assert rung_of(source) == rung_of(t) - 1 and source.state == TrialState.COMPLETE
        before = [
            s
            for s in searched
            if rung_of(s) == rung_of(source)
            and s.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and s.datetime_complete <= t.datetime_start
        ]
        lines = cfg.schedule.lines  # the seed networks' aims: bands do not cross them
        top = promotion_order([s for s in before if s.state == TrialState.COMPLETE], lines=lines)
        # the rounded-down quota while the rung was open, the rounded-up one once closed
        allowed = top[: quota(len(before), cfg.eta, closed=True)]
        assert source.number in [s.number for s in allowed]
        assert t.user_attrs["candidate"] == (source.user_attrs.get("candidate", source.number))
    # the whole rung 0, once closed: its top third went up
    rung0 = [s for s in searched if rung_of(s) == 0 and s.state == TrialState.COMPLETE]
    finished0 = [s for s in searched if rung_of(s) == 0 and s.state != TrialState.FAIL]
    final_top = promotion_order(rung0, lines=cfg.schedule.lines)[
        : quota(len(finished0), 3, closed=True)
    ]
    assert {s.number for s in final_top} <= set(sources)


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_references_are_trained_at_every_rung(climbed):
    study, cfg = climbed
    refs = [
        (t.user_attrs["reference"], rung_of(t))
        for t in study.trials
        if t.user_attrs.get("reference")
    ]
    assert sorted(refs) == [("002", 0), ("002", 1), ("002", 2)]
    assert all(
        t.state == TrialState.COMPLETE for t in study.trials if t.user_attrs.get("reference")
    )


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_the_search_ends_with_the_front_verified_at_the_target(climbed):
    study, cfg = climbed
    from budgetnas.reports.front.frame import trials_frame
    from budgetnas.reports.front.pareto import pareto_front

    _, study = open_run(cfg.out)
    front = pareto_front(trials_frame(study.trials), cap=cfg.cap, rung=2)
    results = stored_results(study)
    verified = {v.key: v for v in results.values()}
    for n in front["number"]:
        record = verified[f"trial-{int(n)}"]
        assert record.fidelity.epochs == 3 and record.fidelity.train_images == 1000
        _raced(record, cfg)
    _raced(verified["zoo-002"], cfg)


def _raced(record, cfg) -> None:
    """The race's seeds of one network: new seeds 1, 2, ... in order (the search trained with
    0), at least the 2 every entrant starts with, at most --race-seeds."""
    seeds = [r.seed for r in record.runs]
    assert seeds == list(range(1, len(seeds) + 1)), seeds
    assert cfg.verify_seeds <= len(seeds) <= cfg.race_seeds, (seeds, cfg.verify_seeds)


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_report_and_pareto_csv_show_the_rungs_and_the_verified_front(climbed):
    import pandas as pd

    from budgetnas.reports.page.run import write_run_reports

    study, cfg = climbed
    write_run_reports(cfg, study)
    rows = pd.read_csv(f"{cfg.out}/pareto.csv", dtype={"reference": str})
    front = rows[rows["role"] == "front"]
    # every network of the race with its seeds there (2 or more: the race's)
    records = {v.key: v for v in stored_results(study).values()}
    assert (front["rung"] == 2).all() and (front["verified_seeds"] >= 2).all()
    for _, row in front.iterrows():
        assert row["verified_seeds"] == len(records[f"trial-{int(row['number'])}"].runs)
    ref = rows[rows["role"] == "reference"]
    assert ref["reference"].tolist() == ["002"]
    assert ref["verified_seeds"].tolist() == [len(records["zoo-002"].runs)]
    record = next(v for v in stored_results(study).values() if v.key == "zoo-002")
    assert ref["verified_test_mean"].iloc[0] == pytest.approx(record.test_mean)
    trials = pd.read_csv(f"{cfg.out}/trials.csv")
    assert {"rung", "train_images", "promoted_from"} <= set(trials.columns)
    from pathlib import Path

    page = (Path(cfg.out) / "report.html").read_text()
    assert "fidelity rungs: 1 ep x 500 img -&gt; 1 ep x 1,000 img -&gt; 3 ep x 1,000 img" in page
    assert "Verified at the target fidelity (3 ep x 1,000 img)" in page
    assert "Candidates at each rung" in page
    from budgetnas.search.study.runs import counts_text, summary_counts

    assert f"; {counts_text(summary_counts(study), rungs=3)}</p>" in page  # every rung counted


@pytest.mark.slow
def test_an_epoch_budget_counts_every_training_the_search_commits_to(tmp_path, synthetic_root):
    """--budget-epochs 8 at one rung with 1 verify seed: each candidate costs one training
    and commits the search to verifying it (up to 5 front members) once more: 4 + 4 fit
    in 8, a fifth (5 + 5) would not; and what was trained does fit."""
    from budgetnas.search.schedule.budgets import trained_image_epochs

    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        trials=None,
        budget_epochs=8,
        verify_seeds=1,
        references="none",
    )
    assert cfg.trials == 1_000_000  # the budget decides
    study = run_search(cfg, quiet=True)
    assert sum(1 for t in study.trials if rung_of(t) == 0) == 4
    _, study = open_run(cfg.out)
    verified = sum(len(v.runs) * v.fidelity.image_epochs for v in stored_results(study).values())
    target = cfg.schedule.target.image_epochs
    assert trained_image_epochs(study.trials) + verified <= 8 * target


def test_a_time_budget_stops_sampling_when_the_next_candidate_would_not_fit(
    tmp_path, synthetic_root, monkeypatch
):
    """A 0.2 s budget: refused at the start, in one line, with nothing written; past that
    check (here switched off), the first trial times the search and the second would
    overrun, so sampling stops after one."""
    from typer.testing import CliRunner

    import budgetnas.search.study.driver as driver
    from budgetnas.search.cli import app
    from tests.helpers import search_args

    run = tmp_path / "run"
    args = search_args(synthetic_root, run, "--budget-time", "0.2s", "--references", "none")
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: --budget-time 0.2s cannot hold the least search")
    assert not run.exists()
    monkeypatch.setattr(driver, "check_budget_fits", lambda *a, **k: None)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    assert "0:00 of search" in result.stderr
    _, study = open_run(run)
    assert len(study.trials) == 1  # timed by the first; the second would overrun


def test_a_promotion_that_failed_is_not_tried_again_and_the_quota_is_never_exceeded():
    schedule = Schedule(plan_rungs(epochs=9, images=9000, rungs=2, eta=3), eta=3)
    trials = [_trial(*row) for row in POPULATION]
    # failed on its own: its training raised, and the objective recorded why
    own = {"error": "TrainingError: training loss became nan in epoch 1"}
    failed = _trial(
        6, 9500, 0.0, rung=1, state=TrialState.FAIL, promoted_from=1, candidate=1, **own
    )
    trials.append(failed)
    job = schedule.next_job(trials, trials_wanted=10)
    assert (job.kind, job.source.number) == ("promote", 5)  # #1 failed there: not again
    trials.append(_trial(7, 2900, 0.98, rung=1, promoted_from=5, candidate=5))
    # a newcomer that tops rung 0 takes no slot: 6 // 3 = 2 moved up already (one failed)
    trials.append(_trial(8, 9000, 0.999))
    assert schedule.next_job(trials, trials_wanted=10).kind == "sample"
    # a reused result is not a second candidate: it neither counts nor moves up
    trials.append(_trial(9, 9000, 0.999, duplicate_of=8))
    assert schedule.next_job(trials, trials_wanted=10).kind == "sample"


def test_a_lost_claim_leaves_a_plain_sampled_candidate():
    from budgetnas.search.schedule.trials import is_sampled, lineage, rung0_used

    lost = _trial(3, 4000, 0.9, rung=0, promoted_from=None, candidate=None)
    assert is_sampled(lost) and rung0_used(lost) and lineage(lost) == 3
    reference = _trial(4, 8530, 0.95, rung=0, reference="002")
    assert not rung0_used(reference) and not is_sampled(reference)


@pytest.mark.slow  # trains for more than ten seconds on 2 cores
def test_an_epoch_budget_holds_with_rungs(tmp_path, synthetic_root):
    from budgetnas.search.schedule.budgets import trained_image_epochs

    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        trials=None,
        epochs=3,
        train_subset=1000,
        rungs=2,
        budget_epochs=6,
        verify_seeds=1,
        references="none",
        caps=(10_000,),
    )
    study = run_search(cfg, quiet=True)
    assert any(rung_of(t) == 1 for t in study.trials)
    _, study = open_run(cfg.out)
    verified = sum(len(v.runs) * v.fidelity.image_epochs for v in stored_results(study).values())
    spent = trained_image_epochs(study.trials) + verified
    assert spent <= 6 * cfg.schedule.target.image_epochs


@pytest.mark.slow  # the `climbed` search: 16 s on 2 cores
def test_export_ships_the_verified_winner_of_a_search_with_rungs(climbed, synthetic_root, tmp_path):
    """One search command ends with the front verified at the target; export's default is the
    best verified searched network, with its best verified weights, at that fidelity."""
    from budgetnas.search.handback.export import export_trial
    from budgetnas.search.verification.records import best_verified

    study, cfg = climbed
    _, study = open_run(cfg.out)
    best = best_verified(stored_results(study), cfg.cap)
    res = export_trial(cfg.out, out=tmp_path / "net.py", data_dir=synthetic_root)
    assert f"trial-{res.trial}" == best.key and rung_of(study.trials[res.trial]) == 2
    # the best validation at the target among the network's weights: its verify seeds and
    # the search's own training of it at the target rung
    target = study.trials[res.trial]
    assert res.shipped.epochs == 3 and res.shipped.train_images == 1000
    candidates = [r.val_acc for r in best.runs] + [target.values[0]]
    assert res.shipped.val_acc == pytest.approx(max(candidates))
    assert res.shipped.source == (
        "verify" if max(r.val_acc for r in best.runs) > target.values[0] else "search"
    )


def test_an_interrupted_promotion_holds_no_slot_and_its_candidate_moves_up_again():
    """Ctrl-C while #1 trained at rung 1: not a failure of #1, which is promoted again (the
    next best, #5, only after it)."""
    schedule = Schedule(plan_rungs(epochs=9, images=9000, rungs=2, eta=3), eta=3)
    trials = [_trial(*row) for row in POPULATION]
    promotion = {"rung": 1, "state": TrialState.FAIL, "promoted_from": 1, "candidate": 1}
    trials.append(_trial(6, 9500, 0.0, **promotion, interrupted="interrupted (Ctrl-C)"))
    job = schedule.next_job(trials, trials_wanted=10)
    assert (job.kind, job.rung, job.source.number) == ("promote", 1, 1)
    # one that failed on its own holds its slot and is not tried again
    trials[-1] = _trial(6, 9500, 0.0, **promotion, error="TrainingError: loss became nan")
    assert schedule.next_job(trials, trials_wanted=10).source.number == 5


def test_a_promotion_whose_process_died_takes_one_slot_with_its_retried_copy():
    """#1's promotion died with its process (failed by the heartbeat: no error recorded) and
    its queued copy trained it: one promotion, one slot, so the second of the two slots
    (6 // 3 = 2) goes to #5."""
    schedule = Schedule(plan_rungs(epochs=9, images=9000, rungs=2, eta=3), eta=3)
    trials = [_trial(*row) for row in POPULATION]
    trials.append(_trial(6, 9500, 0.0, rung=1, state=TrialState.FAIL, promoted_from=1))
    trials.append(_trial(7, 9500, 0.98, rung=1, promoted_from=1, candidate=1))
    job = schedule.next_job(trials, trials_wanted=10)
    assert (job.kind, job.rung, job.source.number) == ("promote", 1, 5)
    trials.append(_trial(8, 2900, 0.97, rung=1, promoted_from=5, candidate=5))
    assert schedule.next_job(trials, trials_wanted=10).kind == "sample"  # both slots used
    from budgetnas.search.schedule.trials import claims

    assert claims(trials) == {1: 1, 5: 1}


def test_trained_image_epochs_counts_pruned_and_failed_trials():
    from budgetnas.search.schedule.budgets import trained_image_epochs

    rungs = plan_rungs(epochs=3, images=3000, rungs=2, eta=3)  # 1 ep x 3,000, 3 ep x 3,000
    trials = [
        _trial(0, 3000, 0.9, val_curve=[0.9], train_images=1000),
        _trial(1, 3000, 0.0, rung=1, state=TrialState.PRUNED, val_curve=[0.5, 0.6]),
        _trial(2, 3000, 0.0, state=TrialState.FAIL, val_curve=[0.4], train_images=500),
        _trial(3, 3000, 0.9, val_curve=[0.9], train_images=1000, duplicate_of=0),
        _trial(4, 3000, 0.0, state=TrialState.WAITING, val_curve=[0.5], train_images=9),
    ]
    # the pruned trial without its images (a study made before they were stored): its rung's
    assert trained_image_epochs(trials, rungs) == 1000 + 2 * rungs[1].images + 500


def test_a_result_reused_from_the_results_cache_spends_no_epoch_budget():
    """A cache hit replays its curve (the pruner decides on it) but trains nothing here."""
    from budgetnas.search.schedule.budgets import trained_image_epochs

    trials = [
        _trial(0, 3000, 0.9, val_curve=[0.9], train_images=1000),
        _trial(1, 3000, 0.9, val_curve=[0.8, 0.9], train_images=1000, cached=True),
    ]
    assert trained_image_epochs(trials) == 1000


def test_a_pruned_trial_says_what_it_trained_on(tmp_path, synthetic_root, monkeypatch):
    """Every epoch of a pruned trial is counted by an epoch budget: the trial stores its
    training images before its first epoch, not only when it finishes."""
    from budgetnas.search.sampling.objective import Objective
    from budgetnas.search.schedule.budgets import trained_image_epochs

    monkeypatch.setattr(Objective, "_prune", lambda self, trial, epoch, acc: True)
    cfg = quick_config(
        synthetic_root, tmp_path / "run", trials=2, epochs=2, rungs=1, references="none"
    )
    study = run_search(cfg, quiet=True)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(pruned) == 2
    assert all(t.user_attrs["train_images"] == 300 for t in pruned)
    assert trained_image_epochs(study.trials) == 2 * 1 * 300


def test_waiting_for_other_processes_prints_no_experimental_warning(
    tmp_path, synthetic_root, monkeypatch
):
    import warnings

    import optuna

    from budgetnas.search.study.guards import ScheduleGuard

    cfg = quick_config(synthetic_root, tmp_path / "run", trials=1, references="none")
    study = optuna.create_study()
    study.ask()  # another process's candidate, still running: nothing to do but wait
    guard = ScheduleGuard(cfg, None, poll=0.01)
    monkeypatch.setattr(study, "stop", lambda: None)  # outside study.optimize here
    monkeypatch.setattr(ScheduleGuard, "patience", lambda self, study: 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        guard(study, study.trials[0])
    assert guard.stopped.startswith("waited")
    # silenced for that call only: the user's own filters are as they were
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        optuna.storages.fail_stale_trials(study)


@pytest.mark.parametrize(
    "epochs, images, batch, rungs, expected",
    [
        # 1 ep x 1,333 img at batch 64 is 20 steps: rung 0 takes 2,560 images (40 steps)
        (2, 6_000, 64, 3, [(1, 2_560), (1, 4_000), (2, 6_000)]),
        # small data: 10 steps an epoch of all 1,293 images, so rung 0 takes 4 whole epochs
        (10, 1_293, 128, 2, [(4, 1_293), (10, 1_293)]),
        # MNIST's default target: every rung far above the floor, planned as without it
        (3, 55_000, 128, 3, [(1, 18_333), (1, 55_000), (3, 55_000)]),
    ],
)
def test_rungs_below_the_target_take_the_steps_it_takes_to_leave_chance(
    epochs, images, batch, rungs, expected
):
    plan = plan_rungs(
        epochs=epochs, images=images, rungs=rungs, eta=3, min_steps=MIN_RUNG_STEPS, batch=batch
    )
    assert [(r.epochs, r.images) for r in plan] == expected
    assert all(rung_steps(r.epochs, r.images, batch) >= MIN_RUNG_STEPS for r in plan)


def test_a_small_data_set_gets_the_rungs_that_rank(synthetic_root, tmp_path):
    """--rungs not given: 3 rungs on 1,293 images would leave rung 0 at 10 steps (and 3
    rungs of 40 steps or more do not fit under 10 epochs): 2 rungs, and the note says why;
    --rungs 3 given on the same data is honoured with a note on its 10-step rung 0."""
    from budgetnas.search.study.header import start_notes

    assert auto_rungs(epochs=10, images=1293, eta=3, pruner="banded", batch=128) == (
        2,
        "the target (10 ep x 1,293 img) leaves room for 1 cheaper rung at half its cost and "
        f"of {MIN_RUNG_STEPS} optimizer steps or more",
    )

    def config(name: str, **rungs):
        return new_config(
            out=tmp_path / name,
            caps=(5000,),
            data_dir=synthetic_root,
            epochs=10,
            train_subset=1293,
            batch_size=128,
            device="cpu",
            **rungs,
        )

    auto = config("b")
    assert auto.min_rung_steps == MIN_RUNG_STEPS
    assert [(r.epochs, r.images) for r in auto.schedule.rungs] == [(4, 1293), (10, 1293)]
    chosen = config("c", rungs=3)
    assert chosen.min_rung_steps == 0
    assert [(r.epochs, r.images) for r in chosen.schedule.rungs][0] == (1, 1293)
    assert (
        "note: rung 0 (1 ep x 1,293 img) is 10 optimizer steps, fewer than the 40 it takes "
        "candidates to leave chance: its ranking is a lottery (leave --rungs out for rungs "
        "that rank)"
    ) in start_notes(chosen)
    assert not any("lottery" in n for n in start_notes(auto))


def test_a_promotion_is_never_cut_by_the_pruner(tmp_path, synthetic_root, monkeypatch):
    """A pruner that would cut every trial after its first epoch: the promotions to the
    two-epoch target still train to the end (rung 0, of one epoch, has nothing to cut)."""
    from budgetnas.search.sampling.objective import Objective

    monkeypatch.setattr(Objective, "_prune", lambda self, trial, epoch, acc: True)
    cfg = quick_config(
        synthetic_root,
        tmp_path / "run",
        trials=3,
        epochs=2,
        train_subset=1000,
        rungs=2,
        pruner="banded",
        references="none",
    )
    study = run_search(cfg, quiet=True)
    promoted = [t for t in study.trials if rung_of(t) == 1]
    assert promoted and all(t.state == TrialState.COMPLETE for t in promoted)
    assert all(len(t.user_attrs["val_curve"]) == 2 for t in promoted)


@pytest.mark.slow
def test_the_pruner_waits_until_candidates_leave_chance(tmp_path, synthetic_root, monkeypatch):
    """An epoch of 6 optimizer steps (300 images, batch 50): with --rungs left to the search
    (here one rung fits), a pruner that would cut every trial cuts none before 40 steps
    (epoch 7); with --rungs given, it cuts after the first epoch, as the user chose."""
    from budgetnas.search.sampling.objective import Objective

    monkeypatch.setattr(Objective, "_prune", lambda self, trial, epoch, acc: True)

    def cut_after(**options) -> set[int]:
        cfg = quick_config(
            synthetic_root,
            tmp_path / str(len(options)),
            trials=2,
            epochs=9,
            pruner="banded",
            references="none",
            verify_seeds=0,
            **options,
        )
        study = run_search(cfg, quiet=True)
        sampled = [t for t in study.trials if rung_of(t) == 0]
        assert sampled and all(t.state == TrialState.PRUNED for t in sampled)
        return {len(t.user_attrs["val_curve"]) for t in sampled}

    planned = cut_after()
    assert planned == {7}  # 7 x 6 = 42 steps, the first epoch at 40 or more
    assert cut_after(rungs=1) == {1}
