"""A live, line-per-trial progress display on stderr (with an in-place epoch line on a TTY)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.schedule.trials import is_searched, rung_of
from budgetnas.search.study.runs import candidates_trained


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def trial_state(trial: FrozenTrial) -> str:
    if trial.user_attrs.get("rejected"):
        return "rejected"
    return {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }[trial.state]


class Progress:
    """Prints a header, one line per finished trial (its rung, params, val acc, state, the
    best searched network so far at the highest rung reached, elapsed time and ETA)."""

    def __init__(
        self,
        *,
        total: int | None,
        done: int = 0,
        timeout: float | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
        rungs: int = 1,
        remaining: Callable[[list[FrozenTrial]], float | None] | None = None,
        before: Iterable[int] = (),
    ) -> None:
        self.total, self.done, self.timeout = total, done, timeout
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.rungs = rungs
        self.remaining = remaining  # seconds of work left, from the study's trials
        self.start = time.perf_counter()
        self.trained_here = 0  # trials this process trained (rejected ones take no time)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        # trial numbers printed, or not to print: ``before``, those that ended before this
        # process started (a resumed run's earlier trials)
        self._printed: set[int] = set(before)
        self._shown = -1  # every trial up to this number has been printed (or was idle)

    def _print(self, line: str) -> None:
        if not self.quiet:
            end = "\n"
            if self._tty:
                line = "\r\033[K" + line
            print(line, end=end, file=self.stream, flush=True)

    def header(self, text: str, notes: list[str] | tuple[str, ...] = ()) -> None:
        self._print(text)
        for note in notes:
            self._print(note)
        rung = f"{'rung':>4}  " if self.rungs > 1 else ""
        self._print(
            f"{'trial':>5}  {rung}{'params':>8}  {'val acc':>7}  {'state':<8}  "
            f"{'best so far':<22}  {'elapsed':>7}  {'eta':>7}"
        )

    def epoch(self, number: int, epoch: int, epochs: int, acc: float) -> None:
        if self._tty and not self.quiet:
            msg = f"  trial {number}: epoch {epoch + 1}/{epochs}  val {acc:.2%}"
            print("\r\033[K" + msg, end="", file=self.stream, flush=True)

    def eta(self, trials: list[FrozenTrial] | None = None) -> float | None:
        """Seconds left: the work the schedule still holds, timed on the trials so far
        (with a time budget or --timeout, no more than what is left of it)."""
        elapsed = time.perf_counter() - self.start
        left = []
        if self.remaining is not None and trials is not None:
            work = self.remaining(trials)
            if work is not None:
                left.append(work)
        elif self.trained_here and self.total is not None:
            left.append(elapsed / self.trained_here * max(0, self.total - self.done))
        if self.timeout is not None:
            left.append(self.timeout - elapsed)
        return min(left) if left else None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: called once per trial this process finished; prints it, and the
        trials other processes of the study (``--workers``) finished since the last line."""
        if trial.user_attrs.get("idle"):
            return
        trials = study.get_trials(deepcopy=False)
        self.done = candidates_trained(study)  # all workers; references do not count
        if not trial.user_attrs.get("rejected"):
            self.trained_here += 1
        self._show(trials, mine=trial)

    def flush(self, study: optuna.Study) -> None:
        """Print the trials other processes finished after this one's last line."""
        trials = study.get_trials(deepcopy=False)
        self.done = candidates_trained(study)
        self._show(trials)

    def _show(self, trials: list[FrozenTrial], mine: FrozenTrial | None = None) -> None:
        ended = [
            t
            for t in trials
            if t.state.is_finished() and not t.user_attrs.get("idle") and t.number > self._shown
        ]
        if mine is not None and all(t.number != mine.number for t in ended):
            ended.append(mine)  # its state may not be stored yet when the callback runs
        best, eta = _best(trials), self.eta(trials)
        for t in sorted(ended, key=lambda t: t.number):
            if t.number in self._printed:
                continue
            self._printed.add(t.number)
            self._print(self._line(t, best, eta))
        # every trial up to here that has ended is printed: the next look starts after it
        while self._shown + 1 in self._printed or any(
            t.number == self._shown + 1 and t.user_attrs.get("idle") for t in trials
        ):
            self._shown += 1

    def _line(self, trial: FrozenTrial, best: str, eta: float | None) -> str:
        params = trial.user_attrs.get("params")
        curve = trial.user_attrs.get("val_curve") or []
        acc = curve[-1] if curve else None
        rung = f"{rung_of(trial):>4}  " if self.rungs > 1 else ""
        line = (
            f"{trial.number:>5}  {rung}{f'{params:,}' if params is not None else '-':>8}  "
            f"{f'{acc:.2%}' if acc is not None else '-':>7}  {trial_state(trial):<8}  "
            f"{best:<22}  {_clock(time.perf_counter() - self.start):>7}  "
            f"{_clock(eta) if eta is not None else '-':>7}"
        )
        if trial.user_attrs.get("reference"):
            line += f"  reference: seed network {trial.user_attrs['reference']}"
        if trial.user_attrs.get("promoted_from") is not None:
            line += f"  promoted from #{trial.user_attrs['promoted_from']}"
        if trial.user_attrs.get("cached"):
            line += "  reused from cache"
        if trial.state == TrialState.FAIL:  # the reason, on the trial's own line
            reason = str(trial.user_attrs.get("error", "no reason recorded")).splitlines()
            line += f"  {reason[0][:200] if reason else ''}"
        return line


def _best(trials: list[FrozenTrial]) -> str:
    """The best searched network at the highest rung any searched network completed (all
    workers; a reference is a yardstick, never the best found)."""
    done = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE and is_searched(t) and not t.user_attrs.get("rejected")
    ]
    if not done:
        return "-"
    top = max(rung_of(t) for t in done)
    at_top = [t for t in done if rung_of(t) == top]
    best = max(at_top, key=lambda t: (t.values[0], -int(t.user_attrs.get("params") or 0)))
    where = f" r{top}" if top else ""
    return f"{best.values[0]:.2%} (#{best.number}{where})"
