"""A live, line-per-trial progress display on stderr (with an in-place epoch line on a TTY)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.runs import finished


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
    """Prints a header, one line per finished trial (params, val acc, state, best, ETA)."""

    def __init__(
        self,
        *,
        total: int | None,
        done: int = 0,
        timeout: float | None = None,
        stream: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.total, self.done, self.timeout = total, done, timeout
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.start = time.perf_counter()
        self.finished_here = 0
        self.best: tuple[float, int, int] | None = None  # (acc, -params, number)
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def _print(self, line: str) -> None:
        if not self.quiet:
            end = "\n"
            if self._tty:
                line = "\r\033[K" + line
            print(line, end=end, file=self.stream, flush=True)

    def header(self, text: str) -> None:
        self._print(text)
        self._print(
            f"{'trial':>5}  {'params':>8}  {'val acc':>7}  {'state':<8}  "
            f"{'best so far':<20}  {'elapsed':>7}  {'eta':>7}"
        )

    def epoch(self, number: int, epoch: int, epochs: int, acc: float) -> None:
        if self._tty and not self.quiet:
            msg = f"  trial {number}: epoch {epoch + 1}/{epochs}  val {acc:.2%}"
            print("\r\033[K" + msg, end="", file=self.stream, flush=True)

    def eta(self) -> float | None:
        elapsed = time.perf_counter() - self.start
        if not self.finished_here:
            return None
        left = []
        if self.total is not None:
            per_trial = elapsed / self.finished_here
            left.append(per_trial * max(0, self.total - self.done))
        if self.timeout is not None:
            left.append(self.timeout - elapsed)
        return min(left) if left else None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: called once per finished trial."""
        self.done = finished(study)  # all workers; references do not count
        self.finished_here += 1
        params = trial.user_attrs.get("params")
        curve = trial.user_attrs.get("val_curve") or []
        acc = curve[-1] if curve else None
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("reference"):  # a yardstick, never the best found
                continue
            key = (t.values[0], -int(t.user_attrs.get("params") or 0), t.number)  # all workers
            if self.best is None or key[:2] > self.best[:2]:
                self.best = key
        best = f"{self.best[0]:.2%} (#{self.best[2]})" if self.best else "-"
        eta = self.eta()
        line = (
            f"{trial.number:>5}  {f'{params:,}' if params is not None else '-':>8}  "
            f"{f'{acc:.2%}' if acc is not None else '-':>7}  {trial_state(trial):<8}  "
            f"{best:<20}  {_clock(time.perf_counter() - self.start):>7}  "
            f"{_clock(eta) if eta is not None else '-':>7}"
        )
        if trial.user_attrs.get("reference"):
            line += f"  reference: seed network {trial.user_attrs['reference']}"
        if trial.state == TrialState.FAIL:  # the reason, on the trial's own line
            reason = str(trial.user_attrs.get("error", "no reason recorded")).splitlines()
            line += f"  {reason[0][:200] if reason else ''}"
        self._print(line)
