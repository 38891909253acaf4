"""The race as a run's study holds it: its entrants (chosen once and stored), every entrant's
seeds at the target, and what the race says: the answer under each cap, its verdicts against
the seed networks, what the race cost. Read without training anything (reports, export, a
later ``budgetnas report``), so a ``budgetnas verify`` of an entrant counts too.

``search.verification.race`` holds the rules; ``search.verification.racing`` runs the race."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

import optuna

from budgetnas.reports.front.compute import process_seconds
from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.schedule.budgets import MAX_VERIFIED
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.timing import GAIN_ATTR
from budgetnas.search.verification.race import (
    Entrant,
    Race,
    RaceRules,
    Standing,
    Verdict,
    pick_entrants,
)
from budgetnas.search.verification.records import Fidelity, Verified, stored_results
from budgetnas.trainers.recipe import TrainConfig

ENTRANTS_ATTR = "race:entrants"  # study user attribute: the race's networks, once chosen


ACCOUNT_ATTR = "race:account"  # study user attribute: what the race cost


def rules_of(cfg: SearchConfig) -> RaceRules:
    """The race's rules from a search's settings: ``--verify-seeds`` the verdict's least
    seeds (``reference_seeds`` for the seed networks, where a time budget trimmed them), two
    to start with, ``--race-seeds`` the most."""
    least = cfg.verify_seeds
    return RaceRules(
        start=min(2, least),
        least=least,
        most=max(cfg.race_seeds, least),
        yardstick_least=cfg.seeds_of_references,
    )


def front_to_verify(front, k: int = MAX_VERIFIED) -> list[int]:
    """Trial numbers of at most ``k`` members of a front (sorted by parameters): all of them
    when they are few, else the smallest, the most accurate, and the rest spread evenly over
    the sizes between."""
    numbers = [int(n) for n in front["number"]]
    if len(numbers) <= k:
        return numbers
    picks = {0, len(numbers) - 1}
    picks.update(round(i * (len(numbers) - 1) / (k - 1)) for i in range(1, k - 1))
    return [numbers[i] for i in sorted(picks)][:k]


def choose_entrants(cfg: SearchConfig, study: optuna.Study) -> list[str]:
    """The race's networks: the front at the target (``front_to_verify``), the searched
    networks within reach of the best reading under each cap and aim (``race.pick_entrants``),
    and the seed networks under a cap (when they are verified at all)."""
    target = cfg.schedule.target.index
    df = trials_frame(study.get_trials(deepcopy=False))
    front = pareto_front(df, cap=cfg.cap, rung=target)
    numbers = front_to_verify(front) if not front.empty else []
    rows = df[
        (df["state"] == "complete")
        & df["reference"].isna()
        & (df["rung"] == target)
        & df["duplicate_of"].isna()
        & (df["params"] <= cfg.cap)
    ]
    readings = [(f"trial-{r.number}", int(r.params), float(r.val_acc)) for r in rows.itertuples()]
    by_key = {k: (k, p, a) for k, p, a in readings}
    keys = pick_entrants(
        [by_key[f"trial-{n}"] for n in numbers],
        readings,
        caps=cfg.caps,
        val_images=cfg.data.val_images,
        aims=cfg.race_aims(),
    )
    if cfg.seeds_of_references:
        keys += [f"zoo-{k}" for k in cfg.reference_specs()]
    return keys


def _items(cfg: SearchConfig, study: optuna.Study, keys: list[str]) -> dict[str, Verified]:
    """The race's networks as verify items (spec, parameters, recipe, search reading)."""
    from budgetnas.search.verification.choose import _choose

    trials = [int(k.removeprefix("trial-")) for k in keys if k.startswith("trial-")]
    zoo = [k.removeprefix("zoo-") for k in keys if k.startswith("zoo-")]
    items = _choose(cfg, study, trials=trials or None, top=None, zoo=zoo or None) if keys else []
    by_key = {v.key: v for v in items}
    return {k: by_key[k] for k in keys if k in by_key}


def target_fidelity(cfg: SearchConfig, recipe: dict) -> Fidelity:
    """The search's target fidelity for a network searched with ``recipe``: the recipe (its
    seed aside) at the last rung's epochs, on the last rung's images."""
    target = cfg.schedule.target
    fitted = TrainConfig.from_dict({**recipe, "epochs": target.epochs}).to_dict()
    return Fidelity(target.epochs, target.images, {k: v for k, v in fitted.items() if k != "seed"})


def readings(study: optuna.Study, cfg: SearchConfig) -> dict[str, float]:
    """Each network's own reading at the target (the searched trial's, a seed network's
    trial there)."""
    target = cfg.schedule.target.index
    out: dict[str, float] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.COMPLETE and rung_of(t) == target and t.values:
            ref = t.user_attrs.get("reference")
            out[f"zoo-{ref}" if ref else f"trial-{t.number}"] = float(t.values[0])
    return out


@dataclass
class RaceView:
    """A race as the study holds it: the rules, every entrant's seeds at the target, and the
    records they come from."""

    race: Race
    records: dict[str, Verified]  # entrant key -> its record at the target (None: no seed yet)
    items: dict[str, Verified]

    def standings(self) -> list[Standing]:
        return self.race.standings()


def race_of(cfg: SearchConfig, study: optuna.Study, keys: list[str] | None = None) -> RaceView:
    """The race of a run, from its stored entrants (or ``keys``) and seeds."""
    if keys is None:
        keys = list(study.user_attrs.get(ENTRANTS_ATTR) or [])
    items = _items(cfg, study, keys)
    stored = stored_results(study)
    read = readings(study, cfg)
    entrants, records = {}, {}
    for key, item in items.items():
        record = stored.get(_store_key(key, target_fidelity(cfg, item.recipe)))
        records[key] = record
        runs = record.runs if record else []
        entrants[key] = Entrant(
            key,
            item.params,
            read.get(key),
            yardstick=not item.searched,
            vals=tuple(r.val_acc for r in runs),
            failed=len(record.failed) if record else 0,
        )
    race = Race(
        entrants, cfg.caps, rules_of(cfg), val_images=cfg.data.val_images, aims=cfg.race_aims()
    )
    return RaceView(race, records, items)


def _store_key(key: str, fidelity: Fidelity) -> str:
    return Verified(key, 0, "", {}, None, fidelity).store_key


def seed_seconds(view: RaceView, study: optuna.Study, key: str) -> float:
    """What one more seed of ``key`` is expected to take: the mean of its seeds trained so
    far (not those from the cache), else its own training at the target (alone)."""
    record = view.records.get(key)
    trained = [r.train_time_s for r in (record.runs if record else []) if not r.cached]
    if trained:
        return statistics.fmean(trained)
    kind, _, name = key.partition("-")
    for t in study.get_trials(deepcopy=False):
        same = (
            t.user_attrs.get("reference") == name
            if kind == "zoo"
            else t.number == int(name) and not t.user_attrs.get("reference")
        )
        if same and t.user_attrs.get("wall_time_s"):
            # its share of its process, times how much faster trainings at once ran there
            # than one alone (the race trains one network at a time)
            gain = float(study.user_attrs.get(GAIN_ATTR) or 1.0)
            return (process_seconds(t.user_attrs) or 0.0) * gain
    return 0.0


def race_header(cfg: SearchConfig, keys: list[str]) -> str:
    """What the race is about to do, in one line."""
    rules = rules_of(cfg)
    searched = sum(k.startswith("trial-") for k in keys)
    yard = len(keys) - searched
    who = f"{searched} searched network{'s' * (searched != 1)}"
    if yard:
        who += f" and {yard} seed network{'s' * (yard != 1)}"
    return (
        f"race at the target ({cfg.schedule.target.label()}): {who} (the front and the "
        f"readings within reach of its best), {rules.start} new seed"
        f"{'s' * (rules.start != 1)} each (1 for a seed network far below the best reading), "
        f"more up to {rules.most} while one is level with "
        f"the leader; the answer and the strongest seed network under each cap end with "
        f"{rules.least} or more"
    )


def budget_word(cfg: SearchConfig) -> str:
    """The option whose budget cut a race short."""
    given = [
        o
        for o, v in (("--budget-time", cfg.budget_time), ("--budget-epochs", cfg.budget_epochs))
        if v
    ]
    return " and ".join(given) or "the compute budget"


def fixed_cost(cfg: SearchConfig, study: optuna.Study, view: RaceView) -> float:
    """Process-seconds a fixed verification would have taken: the front's verified members
    with ``--verify-seeds`` seeds and the seed networks with theirs, each seed timed as the
    race times it (``seed_seconds``)."""
    df = trials_frame(study.get_trials(deepcopy=False))
    front = pareto_front(df, cap=cfg.cap, rung=cfg.schedule.target.index)
    numbers = front_to_verify(front) if not front.empty else []
    total = sum(cfg.verify_seeds * seed_seconds(view, study, f"trial-{n}") for n in numbers)
    refs = [f"zoo-{k}" for k in cfg.reference_specs()]
    return total + sum(cfg.seeds_of_references * seed_seconds(view, study, k) for k in refs)


def answer_text(view: RaceView, standing: Standing) -> str:
    """``trial 72 (9,863 params): validation 87.43% ± 0.20%, test 87.36% ± 0.16% (8
    seeds)``: the answer under a cap on the race's seeds."""
    from budgetnas.search.verification.records import mean_spread

    a = standing.answer
    record = view.records.get(a.key)
    runs = record.runs if record else []
    n = len(runs)
    val = mean_spread([r.val_acc for r in runs]).replace(" (1 seed)", "")
    test = mean_spread([r.test_acc for r in runs]).replace(" (1 seed)", "")
    return (
        f"{a.label} ({a.params:,} params): validation {val}, test {test} ({n} seed{'s' * (n != 1)})"
    )


def race_lines(cfg: SearchConfig, study: optuna.Study) -> list[str]:
    """The race's last lines: per cap, the answer and how it stands against each seed network
    under the cap, and the smallest raced network clearly ahead of a seed network with fewer
    parameters than it and the answer (``Race.smallest_ahead``); then what the race cost
    against a fixed verification, and whether the time budget cut it. Empty when the run has
    no race."""
    if not study.user_attrs.get(ENTRANTS_ATTR):
        return []
    view = race_of(cfg, study)
    account = study.user_attrs.get(ACCOUNT_ATTR) or {}
    cut = cut_word(account)
    lines = []
    for s in view.standings():
        under = f"under {s.cap:,}"
        if s.answer is None:
            lines.append(f"answer {under}: none (no searched network finished its seeds)")
            continue
        lines.append(f"answer {under}: {answer_text(view, s)}")
        for v in s.verdicts:
            lines.append(f"verdict {under}: {v.text()}{held_back(view.race, s, v, cut)}")
        for e, v in view.race.smallest_ahead(s.cap):
            lines.append(f"verdict {under}: {v.text_of(e)}")
        if not s.verdicts:
            lines.append(f"verdict {under}: no seed network under the cap to compare with")
    if account:
        lines.append(account_text(account))
    return lines


def cut_word(account: dict[str, Any]) -> str | None:
    """The option whose budget cut the race short, as its account stored it (older runs
    stored True: ``--budget-time``); None when nothing was cut."""
    cut = account.get("cut")
    return (cut if isinstance(cut, str) else "--budget-time") if cut else None


def held_back(race: Race, s: Standing, v: Verdict, cut: str | None) -> str:
    """What a race cut short (``cut``: the budget's option) left verdict ``v`` of standing
    ``s`` without: ``; cut short by --budget-time: wanted 3 + 3 seeds, up to 8 + 8 while
    level`` (the least seeds for the strongest yardstick's verdict; the most while level and
    the race still wants seeds of the pair, ``Standing.needs``); empty when it has them, or
    nothing was cut. Seeds are counted as the race counts them (a failed seed is done)."""
    if not cut or s.answer is None:
        return ""
    rules, a, y = race.rules, s.answer, v.yardstick
    wants = []
    strongest = bool(s.verdicts) and s.verdicts[0].yardstick.key == y.key
    if strongest and (a.done < rules.least or y.done < rules.least_of(y)):
        wants.append(f"{rules.least} + {rules.least_of(y)} seeds")
    if v.word == "level" and y.key in s.needs:
        wants.append(f"up to {rules.most} + {rules.most}{'' if wants else ' seeds'} while level")
    return f"; cut short by {cut}: wanted " + ", ".join(wants) if wants else ""


def account_text(account: dict[str, Any]) -> str:
    """``race: 23 seeds trained, 12.3 process-min (3 more from the results cache); a fixed 3
    seeds of the front and the seed networks: 15.0 process-min``, and a cut if there was one."""
    from budgetnas.search.units import duration

    n, cached = account.get("trained", 0), account.get("cached", 0)
    text = f"race: {n} seed{'s' * (n != 1)} trained, {duration(account.get('seconds', 0.0))}"
    if cached:
        text += f" ({cached} more from the results cache)"
    fixed = account.get("fixed_seconds")
    if fixed:
        text += (
            f"; a fixed {account.get('fixed_seeds')} seeds of the front and the seed networks: "
            f"{duration(fixed)} (each seed timed as the race times it)"
        )
    if cut := cut_word(account):
        text += f"; cut short by {cut}: some networks could not be told apart"
    return text


def race_answer(cfg: SearchConfig, study: optuna.Study) -> str | None:
    """The race's answer under the hard cap in one line (None: no race, or no answer)."""
    if not study.user_attrs.get(ENTRANTS_ATTR):
        return None
    view = race_of(cfg, study)
    standing = view.race.standing(cfg.cap)
    if standing.answer is None:
        return None
    return f"{answer_text(view, standing)} at {cfg.schedule.target.label()}, the race's answer"
