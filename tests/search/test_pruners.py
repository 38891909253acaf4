from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from budgetnas.search.sampling.pruners import BandedMedianPruner, make_pruner


def _study(rows):
    """rows: (params, accuracy at step 0) of completed trials."""
    study = optuna.create_study(direction="maximize")
    for params, acc in rows:
        study.add_trial(
            create_trial(
                state=TrialState.COMPLETE,
                value=acc,
                intermediate_values={0: acc},
                user_attrs={"params": params, "val_curve": [acc]},
                params={"x": 0.0},
                distributions={"x": FloatDistribution(0, 1)},
            )
        )
    return study


def _running(study, params, acc):
    trial = study.ask()
    trial.set_user_attr("params", params)
    trial.set_user_attr("val_curve", [acc])
    trial.report(acc, 0)
    return study._storage.get_trial(trial._trial_id)


BIG = [(9000, 0.97), (9500, 0.975), (8800, 0.968), (9900, 0.98), (9200, 0.971)]


def test_small_network_is_not_judged_against_big_ones():
    study = _study(BIG)
    small = _running(study, 3000, 0.93)
    assert not BandedMedianPruner().prune(study, small)
    # the stock pruner cuts it: it is below the median of all trials at step 0
    assert optuna.pruners.MedianPruner(n_startup_trials=5).prune(study, small)


def test_weak_network_among_its_peers_is_pruned():
    study = _study(BIG + [(3100, 0.95), (2900, 0.955), (2500, 0.94)])
    assert BandedMedianPruner().prune(study, _running(study, 3000, 0.93))
    assert not BandedMedianPruner().prune(study, _running(study, 3000, 0.96))


def test_band_width_decides_who_is_a_peer():
    study = _study([(4000, 0.96), (4200, 0.97), (4400, 0.965)])
    trial = _running(study, 3000, 0.95)
    assert not BandedMedianPruner(band=1.2).prune(study, trial)  # 3600 is the limit
    assert BandedMedianPruner(band=1.5).prune(study, trial)


def test_make_pruner_names_the_rule_they_apply():
    """By what each does: a small network trailing big ones is kept by ``banded``, cut by
    ``median``; ``none`` keeps even a hopeless one; ``hyperband`` has its documented rungs."""
    study = _study(BIG)
    small = _running(study, 3000, 0.93)
    assert not make_pruner("banded").prune(study, small)
    assert make_pruner("median").prune(study, small)
    hopeless = _running(study, 9000, 0.01)
    assert make_pruner("median").prune(study, hopeless)
    assert make_pruner("banded").prune(study, hopeless)
    assert not make_pruner("none").prune(study, hopeless)
    hyperband = make_pruner("hyperband")
    assert (hyperband._min_resource, hyperband._reduction_factor) == (1, 3)
    with pytest.raises(ValueError, match="unknown pruner"):
        make_pruner("random")


def test_banded_rule_reads_validation_curves_not_optuna_values():
    """The rule multi-objective studies use inside the objective: same answer, no report."""
    study = _study(BIG + [(3100, 0.95), (2900, 0.955), (2500, 0.94)])
    pruner = BandedMedianPruner()
    assert pruner.decide(study, 3000, 0, 0.93) and not pruner.decide(study, 3000, 0, 0.96)
    assert pruner.peers(study, 3000, 0) == [0.95, 0.955, 0.94]
    assert pruner.peers(study, 3000, 1) == []  # no completed trial reached a second epoch
