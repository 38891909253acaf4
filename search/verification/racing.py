"""The race at the end of a search, run: entrants chosen once and stored on the study, one
more seed at a time over the search's processes, within its time budget.

``search.race`` holds the rules (pure functions of the seeds so far); this module reads the
seeds from the study, trains the next one the rules ask for and stores it, in every process
of the search at once: each process takes the next seed under a lock file in the run folder
(``race.lock``; the networks being trained are claimed in ``race-claims.json``), so two
processes never train the same network at once (one network's record is written by one
process) and a claim whose process died is dropped. With ``--budget-time`` a seed is started
only when the time it took that network before (its training at the target) fits before
the deadline with the reports; a race the deadline cut short says so beside its verdict.

The entrants (``race:entrants``) and the race's own account (``race:account``: seeds trained
and their seconds, seeds from the cache, whether the deadline cut it, and what verifying the
front and the seed networks with a fixed number of seeds would have cost) are study user
attributes; the answer and the verdicts are computed from the stored seeds whenever they are
read (``race_of``), so a later ``budgetnas verify`` of an entrant counts too.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import torch

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import pareto_front
from budgetnas.search.schedule.budgets import MAX_VERIFIED
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.processes import start_helper, supervised, watch_parent
from budgetnas.search.study.runs import read_config
from budgetnas.search.verification.race import Entrant, Race, RaceRules, Standing, pick_entrants
from budgetnas.search.verification.records import Fidelity, Verified, stored_results
from budgetnas.search.verification.seedlines import OnFailed, OnResult, printers
from budgetnas.trainers.recipe import TrainConfig

if TYPE_CHECKING:
    from budgetnas.search.cache.store import ResultCache

ENTRANTS_ATTR = "race:entrants"  # study user attribute: the race's networks, once chosen
ACCOUNT_ATTR = "race:account"  # study user attribute: what the race cost
DEADLINE_ATTR = "deadline"  # study user attribute: --budget-time's end, seconds since the epoch
LOCK_FILE, CLAIMS_FILE = "race.lock", "race-claims.json"
# seconds kept before a deadline for what follows the race: reading every record back and
# writing the reports (measured: under 3 s for a study of 1,600 trials on a 2-core CPU)
END_MARGIN_S = 5.0
SAFETY = 1.1  # a seed is timed at this much of the time it took before
POLL_S = 1.0  # how often a process with nothing to start looks again while others train


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
    networks within reach of the best reading under each cap (``race.pick_entrants``), and
    the seed networks under a cap (when they are verified at all)."""
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
    race = Race(entrants, cfg.caps, rules_of(cfg), val_images=cfg.data.val_images)
    return RaceView(race, records, items)


def _store_key(key: str, fidelity: Fidelity) -> str:
    return Verified(key, 0, "", {}, None, fidelity).store_key


# ---- claims: which network each process is training ------------------------------------


@contextlib.contextmanager
def _locked(run: Path) -> Iterator[None]:
    """An exclusive lock on the run's race (``fcntl.flock``; where there is none, a lock
    file created exclusively)."""
    path = run / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on the platforms tested here
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                time.sleep(0.05)
        try:
            yield
        finally:
            os.close(fd)
            os.unlink(path)
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


HOST = socket.gethostname()


def _claims(run: Path) -> dict[str, dict[str, Any]]:
    """The networks being trained now (key -> claim), those of dead processes dropped."""
    try:
        claims = json.loads((run / CLAIMS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {k: c for k, c in claims.items() if c.get("host") != HOST or _alive(int(c["pid"]))}


def _write_claims(run: Path, claims: dict[str, dict[str, Any]]) -> None:
    tmp = run / f".{CLAIMS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(claims))
    os.replace(tmp, run / CLAIMS_FILE)


# ---- one process of the race -----------------------------------------------------------


def seed_seconds(view: RaceView, study: optuna.Study, key: str) -> float:
    """What one more seed of ``key`` is expected to take: the mean of its seeds trained so
    far (not those from the cache), else its own training at the target."""
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
            return float(t.user_attrs["wall_time_s"])
    return 0.0


def race_process(
    run: Path | str,
    *,
    cache: ResultCache | None = None,
    on_result: OnResult | None = None,
    on_failed: OnFailed | None = None,
    device: str | None = None,
    clock: Callable[[], float] = time.time,
) -> dict[str, Any]:
    """Train the race's seeds in this process until the race is over or the deadline leaves
    no time for the next one; returns this process's account (seeds trained, their seconds,
    seeds from the cache, whether the deadline stopped it)."""
    from budgetnas.search.verification.retrain import Verifier

    run = Path(run)
    cfg = read_config(run)
    verifier = Verifier(
        run, device=device or cfg.device, train_subset=cfg.data.train_subset, cache=cache
    )
    study = verifier.study
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    account = {"trained": 0, "seconds": 0.0, "cached": 0, "cut": False}
    while True:
        with _locked(run):
            view = race_of(cfg, study)
            claims = _claims(run)
            fits = _fits(view, study, deadline, clock)
            if cfg.budget_epochs:
                fits = _within_epochs(cfg, study, len(claims), fits)
            key = view.race.next_seed(busy=claims, fits=fits)
            if key is None:
                wanted = view.race.next_seed(busy=claims)
                if wanted is not None:  # wanted, but the compute budget has no room for it
                    account["cut"] = True
                    break
                if not claims:
                    break
            else:
                claims[key] = {"pid": os.getpid(), "host": HOST, "since": time.time()}
                _write_claims(run, claims)
        if key is None:
            time.sleep(POLL_S)  # others are training: their seeds may ask for more
            continue
        try:
            entrant = view.race.entrants[key]
            item = verifier.seeds(view.items[key], entrant.done + 1)
            for f in item.failed:
                if f.seed in item.failed_now and on_failed is not None:
                    on_failed(item, f)
            for r in (r for r in item.runs if r.seed not in _seeds(view, key)):
                if on_result is not None:
                    on_result(item, r)
                if r.cached:
                    account["cached"] += 1
                else:
                    account["trained"] += 1
                    account["seconds"] += r.train_time_s
        finally:
            with _locked(run):
                claims = _claims(run)
                claims.pop(key, None)
                _write_claims(run, claims)
    return account


def _fits(
    view: RaceView, study: optuna.Study, deadline: float | None, clock: Callable[[], float]
) -> Callable[[str], bool] | None:
    """Whether one more seed of a network fits before ``deadline`` with the reports (None:
    no deadline, everything fits)."""
    if deadline is None:
        return None

    def fits(key: str) -> bool:
        needed = SAFETY * seed_seconds(view, study, key) + END_MARGIN_S
        return clock() + needed <= float(deadline)

    return fits


def _within_epochs(
    cfg: SearchConfig,
    study: optuna.Study,
    in_flight: int,
    fits: Callable[[str], bool] | None,
) -> Callable[[str], bool]:
    """``--budget-epochs``: one more seed at the target fits when what the search trained,
    what verification trained so far (a seed from the cache trained nothing), the seeds in
    flight and this one stay within the budget (and ``fits`` holds too)."""
    from budgetnas.search.schedule.budgets import trained_image_epochs

    target = cfg.schedule.target.image_epochs
    limit = cfg.budget_epochs * target
    spent = trained_image_epochs(study.get_trials(deepcopy=False), cfg.schedule.rungs)
    for record in stored_results(study).values():
        if record.fidelity is not None:
            spent += sum(not r.cached for r in record.runs) * record.fidelity.image_epochs
    room = spent + (in_flight + 1) * target <= limit

    def within(key: str) -> bool:
        return room and (fits is None or fits(key))

    return within


def _seeds(view: RaceView, key: str) -> set[int]:
    record = view.records.get(key)
    return {r.seed for r in record.runs} if record else set()


# ---- the race of a search: its processes, its account -----------------------------------


def run_race(
    cfg: SearchConfig,
    study: optuna.Study,
    *,
    quiet: bool = False,
    cache: ResultCache | None = None,
    threads: int | None = None,
) -> RaceView:
    """The end of a search: choose the entrants (once; a resumed race keeps them), race them
    over ``cfg.workers`` processes (this one and helpers of ``threads`` threads each), store
    the race's account, and return the race as the study holds it."""
    keys = list(study.user_attrs.get(ENTRANTS_ATTR) or [])
    fresh = choose_entrants(cfg, study)
    keys += [k for k in fresh if k not in keys]  # a resumed search may have added to the front
    study.set_user_attr(ENTRANTS_ATTR, keys)
    run = Path(cfg.out)
    if not quiet:
        print(race_header(cfg, keys), file=sys.stderr)
    show, show_failed = printers(quiet)
    helpers = []
    if cfg.workers > 1:
        from budgetnas.search.cache.store import helper_env

        env = helper_env(cache, threads=threads or 1)
        argument = json.dumps({"run": str(run), "quiet": quiet})
        command = [sys.executable, "-m", "budgetnas.search.verification.racing", argument]
        helpers = [start_helper(command, env=env) for _ in range(cfg.workers - 1)]
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with supervised(helpers, what="race", quiet=quiet):
            mine = race_process(run, cache=cache, on_result=show, on_failed=show_failed)
    finally:
        torch.set_num_threads(before)
    view = race_of(cfg, study)
    accounts = [mine] + [_read_account(run, p.pid) for p in helpers]
    account = {
        "processes": sum(1 for a in accounts if a),  # those that raced to the end
        "trained": sum(a.get("trained", 0) for a in accounts),
        "seconds": round(sum(a.get("seconds", 0.0) for a in accounts), 3),
        "cached": sum(a.get("cached", 0) for a in accounts),
        "cut": _budget_word(cfg)
        if any(a.get("cut") for a in accounts) and not view.race.finished()
        else "",
        "fixed_seeds": cfg.verify_seeds,
        "fixed_seconds": round(fixed_cost(cfg, study, view), 3),
    }
    study.set_user_attr(ACCOUNT_ATTR, account)
    return view


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
        f"{'s' * (rules.start != 1)} each, more up to {rules.most} while one is level with "
        f"the leader; the answer and the strongest seed network under each cap end with "
        f"{rules.least} or more"
    )


def _budget_word(cfg: SearchConfig) -> str:
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


def _account_file(run: Path, pid: int) -> Path:
    return run / f".race-account-{pid}.json"


def _read_account(run: Path, pid: int) -> dict[str, Any]:
    path = _account_file(run, pid)
    try:
        account = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    path.unlink(missing_ok=True)
    return account


def main(argument: str) -> None:
    """A helper process of the race: race in the run ``argument`` (JSON) names; it ends with
    the process that started it (``search.processes.watch_parent``)."""
    from budgetnas.search.cache.store import open_cache

    watch_parent()
    args = json.loads(argument)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or torch.get_num_threads()))
    show, show_failed = printers(bool(args.get("quiet")))
    run = Path(args["run"])
    try:
        account = race_process(run, cache=open_cache(), on_result=show, on_failed=show_failed)
    except KeyboardInterrupt:  # stopped by the search, which says so; what finished is stored
        sys.exit(130)
    _account_file(run, os.getpid()).write_text(json.dumps(account))


if __name__ == "__main__":
    main(sys.argv[1])


# ---- what the race says -----------------------------------------------------------------


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
    under the cap; then what the race cost against a fixed verification, and whether the
    time budget cut it. Empty when the run has no race."""
    if not study.user_attrs.get(ENTRANTS_ATTR):
        return []
    view = race_of(cfg, study)
    lines = []
    for s in view.standings():
        under = f"under {s.cap:,}"
        if s.answer is None:
            lines.append(f"answer {under}: none (no searched network finished its seeds)")
            continue
        lines.append(f"answer {under}: {answer_text(view, s)}")
        for v in s.verdicts:
            lines.append(f"verdict {under}: {v.text()}")
        if not s.verdicts:
            lines.append(f"verdict {under}: no seed network under the cap to compare with")
    account = study.user_attrs.get(ACCOUNT_ATTR)
    if account:
        lines.append(account_text(account))
    return lines


def account_text(account: dict[str, Any]) -> str:
    """``race: 23 seeds trained, 12.3 process-min (3 more from the results cache); a fixed 3
    seeds of the front and the seed networks: 15.0 process-min``, and a cut if there was one."""
    from budgetnas.reports.page.run import duration

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
    if account.get("cut"):
        cut = account["cut"] if isinstance(account["cut"], str) else "--budget-time"
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
