"""Which network a run hands back and with which weights: the race's answer (or the network
asked for), and the best weights the run holds for it: from the highest fidelity it was
trained at (the search's own training, or a verify seed), the best validation accuracy there.
Read from the run; nothing trained."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.trials import lineage, rung_of
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.runs import accuracy, pick_trial, trial_spec
from budgetnas.search.verification.records import (
    Fidelity,
    best_verified,
    network_label,
    stored_results,
)
from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.trainers.recipe import TrainConfig


@dataclass(frozen=True)
class Weights:
    """One set of trained weights of a network: where they come from and how good they are."""

    source: str  # "search" (the trial's own training) or "verify"
    seed: int
    epochs: int
    train_images: int
    fidelity: str  # "3 ep x 55,000 img, adamw lr 0.03 b128 aug 1 beta1 0.7 wd 0.01"
    val_acc: float
    test_acc: float | None  # recorded by verify; the search never reads the test set
    path: str  # relative to the run folder
    recipe: dict | None = None  # the recipe they were trained with, their seed included
    of: str = ""  # whose they are: "trial 8" (its own training or its verify record), "seed 002"

    @property
    def image_epochs(self) -> int:
        return self.epochs * self.train_images

    def name(self, exported: tuple[str, ...] = ()) -> str:
        """``verify seed 0``, with ``of trial 8`` when they belong to another trial than
        ``exported`` (the labels of the network exported)."""
        whose = f" of {self.of}" if self.of and self.of not in exported else ""
        return f"{self.source} seed {self.seed}{whose}"

    def describe(self, exported: tuple[str, ...] = ()) -> str:
        return f"{self.name(exported)}, {self.fidelity}, validation {self.val_acc:.2%}"


def network_key(trial: FrozenTrial) -> str:
    """The key verify stores a trial's results under: ``trial-12``, or ``zoo-001``."""
    reference = trial.user_attrs.get("reference")
    return f"zoo-{reference}" if reference else f"trial-{trial.number}"


def choose_network(cfg: SearchConfig, study: optuna.Study, number: int | None):
    """(trial, why): trial ``number``, or the network a user should take: the best verified
    searched network (``best_verified``), else the searched trial with the best validation
    accuracy under the cap."""
    from budgetnas.search.verification.standing import ENTRANTS_ATTR, race_of

    trials = study.get_trials(deepcopy=False)
    if number is not None:
        return pick_trial(trials, number, cap=cfg.cap), "asked for with --trial"
    if study.user_attrs.get(ENTRANTS_ATTR):
        answer = race_of(cfg, study).race.standing(cfg.cap).answer
        if answer is not None:
            n = len(answer.vals)
            why = (
                f"the race's answer under the cap: best mean validation accuracy "
                f"({answer.mean:.2%}, {n} seed{'s' * (n != 1)}) at the target"
            )
            by_number = {t.number: t for t in trials}
            return by_number[int(answer.key.removeprefix("trial-"))], why
    best = best_verified(stored_results(study), cfg.cap)
    if best is not None:
        by_number = {t.number: t for t in trials}
        n = len(best.runs)
        why = (
            f"best mean validation accuracy ({best.val_mean:.2%}, {n} seed{'s' * (n > 1)}) "
            f"among the searched networks verified at {best.fidelity_label}"
        )
        return by_number[int(best.key.removeprefix("trial-"))], why
    trial = pick_trial(trials, None, cap=cfg.cap)
    return trial, "best validation accuracy of the search under the cap (not verified yet)"


def network_trials(trials: list[FrozenTrial], trial: FrozenTrial) -> list[FrozenTrial]:
    """The completed trials that hold ``trial``'s network (the same spec), ``trial`` first:
    the same candidate at every rung it was promoted to, and any reused result of it."""
    spec = trial_spec(trial)
    same = [
        t
        for t in trials
        if t.number != trial.number
        and t.state == TrialState.COMPLETE
        and t.user_attrs.get("spec") is not None
        and _same_spec(t.user_attrs["spec"], spec)
    ]
    return [trial, *same]


def _same_spec(text: str, spec: ArchSpec) -> bool:
    try:
        return ArchSpec.from_json(text) == spec
    except SpecError:
        return False


def _search_weights(cfg: SearchConfig, trial: FrozenTrial) -> Weights | None:
    """The weights a trial's own training left, if it kept them."""
    if not trial.user_attrs.get("weights"):
        return None
    recipe = TrainConfig.from_dict(trial.user_attrs.get("recipe") or cfg.recipe.to_dict())
    images = int(trial.user_attrs.get("train_images") or cfg.data.train_images)
    fidelity = Fidelity(
        recipe.epochs, images, {k: v for k, v in recipe.to_dict().items() if k != "seed"}
    )
    return Weights(
        "search",
        recipe.seed,
        recipe.epochs,
        images,
        fidelity.label(),
        float(accuracy(trial)),
        None,
        trial.user_attrs["weights"],
        recipe.to_dict(),
        of=f"trial {trial.number}",
    )


def weight_choices(cfg: SearchConfig, study: optuna.Study, trial: FrozenTrial) -> list[Weights]:
    """Every set of weights of ``trial``'s network kept in the run, wherever it is: the
    search's own training of each trial holding the network (``network_trials``: a candidate
    promoted to higher rungs is trained again there) and each seed ``verify`` trained for any
    of them, at any fidelity."""
    holders = network_trials(study.get_trials(deepcopy=False), trial)
    choices = [w for w in (_search_weights(cfg, t) for t in holders) if w is not None]
    keys = {network_key(t) for t in holders}
    spec = trial_spec(trial)
    for record in stored_results(study).values():
        if record.fidelity is None:
            continue
        if record.key not in keys and not _same_spec(record.spec, spec):
            continue
        for r in record.runs:
            if r.weights:
                choices.append(
                    Weights(
                        "verify",
                        r.seed,
                        record.fidelity.epochs,
                        record.fidelity.train_images,
                        record.fidelity_label,
                        r.val_acc,
                        r.test_acc,
                        r.weights,
                        {**record.fidelity.recipe, "seed": r.seed},
                        of=record.label,
                    )
                )
    return choices


def best_weights(choices: list[Weights]) -> Weights:
    """The weights to ship: from the highest fidelity trained (epochs x images), the best
    validation accuracy among those (ties: the search's own, then the lowest seed)."""
    return max(choices, key=lambda w: (w.image_epochs, w.val_acc, w.source == "search", -w.seed))


def network_verdict(cfg: SearchConfig, study: optuna.Study, trial: FrozenTrial) -> str | None:
    """How ``trial``'s network stands against each seed network under the cap on the race's
    seeds, in one line (None: it was not raced, or no seed network was)."""
    from budgetnas.search.verification.standing import ENTRANTS_ATTR, race_of

    if not study.user_attrs.get(ENTRANTS_ATTR):
        return None
    verdicts = race_of(cfg, study).race.verdicts_for(network_key(trial), cfg.cap)
    return "; ".join(v.text() for v in verdicts) or None


def relation(study: optuna.Study, chosen: FrozenTrial, of: str) -> str:
    """How ``of`` (``trial 8``), which holds the weights shipped, relates to the trial
    exported: ``trial 8 is trial 5 promoted to rung 2``."""
    label = network_label(network_key(chosen))
    number = of.removeprefix("trial ")
    if not number.isdigit():
        return f"{of} holds the same network as {label}"
    other = study.get_trials(deepcopy=False)[int(number)]
    if lineage(other) == lineage(chosen) and rung_of(other) > rung_of(chosen):
        return f"{of} is {label} promoted to rung {rung_of(other)}"
    if lineage(other) == lineage(chosen) and rung_of(other) < rung_of(chosen):
        return f"{of} is {label} at rung {rung_of(other)}, before its promotion"
    return f"{of} holds the same network as {label}"
