"""The objective: sample a candidate (or take a queued reference network), check it against
its cap, train it, record everything.

Everything a report, an export or a re-training needs is stored on the trial as user
attributes: the spec JSON, its counts, the recipe, the validation curve, the train time, the
device. A trial's own failure (a diverging loss, CUDA out of memory, anything its training
raises) is recorded on it as ``error`` and re-raised for the driver, which counts it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from budgetnas.search.cache.reuse import Lookup, cache_lookup
from budgetnas.search.cache.store import ResultCache
from budgetnas.search.sampling.jobs import WORKER, take_job
from budgetnas.search.sampling.pruners import BandedMedianPruner
from budgetnas.search.sampling.recipe import sample_recipe
from budgetnas.search.sampling.samplers import flat_space, is_multi_objective
from budgetnas.search.sampling.sizing import ASSIGNED, assign_size
from budgetnas.search.schedule.rungs import Rung, rung_steps
from budgetnas.search.schedule.trials import rung_of
from budgetnas.search.study.config import SearchConfig
from budgetnas.search.study.progress import Progress
from budgetnas.search.study.runs import FINISHED, WEIGHTS_DIR, trial_spec
from budgetnas.space.count import analyze
from budgetnas.space.memory import activation_memory
from budgetnas.space.sample import Rejected, sample_spec
from budgetnas.space.spec import ArchSpec, SpecError
from budgetnas.trainers.data import TrainVal
from budgetnas.trainers.many import Job
from budgetnas.trainers.recipe import TrainConfig
from budgetnas.trainers.train import TrainingError, TrainResult, train

# Failures that belong to the candidate: recorded without a traceback.
EXPECTED_ERRORS = (TrainingError, SpecError, torch.cuda.OutOfMemoryError)


def candidate_key(spec: ArchSpec, recipe: TrainConfig, data: dict) -> str:
    """Canonical identity of a result: the spec, the recipe and the data it is trained on."""
    text = json.dumps([spec.to_dict(), recipe.to_dict(), data], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def assign_cap(trial: optuna.Trial, caps: tuple[int, ...]) -> int:
    """The cap of the ladder this trial answers: the one stored on it when it was queued (a
    retried or requeued trial keeps its cap), else the cap with the fewest trials so far."""
    stored = trial.user_attrs.get("cap")
    if stored in caps:
        return int(stored)
    counts = dict.fromkeys(caps, 0)
    for t in trial.study.get_trials(deepcopy=False):
        cap = t.user_attrs.get("cap")
        sampled = not t.user_attrs.get("reference")
        if t.number != trial.number and t.state != TrialState.FAIL and cap in counts and sampled:
            counts[cap] += 1
    cap = min(caps, key=lambda c: (counts[c], c))
    trial.set_user_attr("cap", cap)
    return cap


class Objective:
    """Take the next job of the schedule (a promotion of a candidate to the next rung, or a
    new candidate sampled at rung 0; or the queued reference network at its rung), check it
    against its cap, train it at its rung's fidelity, prune it if it trails its size band at
    that rung; the trial's values are its validation accuracy and, for a multi-objective
    sampler, its parameter count.

    A candidate identical (spec, recipe and data) to one already trained in the study reuses
    that result instead of training again. Reference networks are never pruned: they are the
    yardstick the report and the pruner compare with.
    """

    def __init__(
        self,
        cfg: SearchConfig,
        data: TrainVal,
        device: torch.device,
        progress: Progress,
        sampling_open: Callable[[list[FrozenTrial]], bool] | None = None,
        cache: ResultCache | None = None,
    ) -> None:
        self.cfg, self.data, self.device, self.progress = cfg, data, device, progress
        self.schedule = cfg.schedule
        self.data_fingerprint = cfg.data.fingerprint()
        self.weights_dir = Path(cfg.out) / WEIGHTS_DIR
        self.multi = is_multi_objective(cfg.sampler)
        # multi-objective studies have no Optuna pruner: the banded rule runs here
        self.banded = BandedMedianPruner() if self.multi and cfg.pruner == "banded" else None
        self.references = cfg.reference_specs()
        self.sampling_open = sampling_open
        self.cache = cache  # finished trainings shared with other searches (search.cache)
        self._rung_data: dict[int, TrainVal] = {}

    def rung_data(self, rung: Rung) -> TrainVal:
        if rung.images not in self._rung_data:
            self._rung_data[rung.images] = self.data.first(rung.images)
        return self._rung_data[rung.images]

    def _job(self, trial: optuna.Trial) -> FrozenTrial | None:
        """What this trial is (``jobs.take_job``): the trial it promotes, or None."""
        return take_job(
            trial, self.schedule, sampling_open=self.sampling_open, trials_wanted=self.cfg.trials
        )

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        with self.recording(trial):
            step = self.begin(trial)
            if not isinstance(step, Pending):
                return step
            try:
                result = train(
                    step.job.spec,
                    step.job.data,
                    step.job.cfg,
                    device=self.device,
                    on_epoch=step.job.on_epoch,
                )
            except BaseException:
                self.ended(step)
                raise
            return self.finish(step, result)

    @contextlib.contextmanager
    def recording(self, trial: optuna.Trial) -> Iterator[None]:
        """Around everything done for ``trial``: its own failure recorded on it (``error``,
        and a traceback for the unexpected), a Ctrl-C marked as not its failure."""
        try:
            yield
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            # not the candidate's failure: --resume trains it again (``schedule.is_lost``)
            trial.set_user_attr("interrupted", "interrupted (Ctrl-C)")
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:2000])
            if not isinstance(err, EXPECTED_ERRORS):
                trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
            if isinstance(err, torch.cuda.OutOfMemoryError):
                torch.cuda.empty_cache()
            raise

    def values(self, acc: float, params: int) -> float | tuple[float, float]:
        return (acc, float(params)) if self.multi else acc

    def _candidate(
        self, trial: optuna.Trial, cap: int, source: FrozenTrial | None
    ) -> tuple[ArchSpec, TrainConfig]:
        """The spec and recipe of this trial (at rung 0's epochs for a sampled one): the
        queued reference's, the promoted candidate's, or sampled."""
        reference = trial.user_attrs.get("reference")
        if reference is not None:
            if reference not in self.references:
                raise SpecError(f"reference {reference!r} is not a reference of this search")
            return self.references[reference][0], self.cfg.recipe
        if source is not None:
            recipe = TrainConfig.from_dict(source.user_attrs.get("recipe") or {})
            return trial_spec(source), recipe
        recipe, dropout = self.cfg.recipe, self.cfg.space_config.dropout
        if self.cfg.search_recipe:
            recipe, dropout = sample_recipe(trial, self.cfg.recipe)
        space = replace(self.cfg.space_config, dropout=dropout)
        limits = self.cfg.limits(cap)
        if self.cfg.sizing in ASSIGNED:  # the sampler answers "size" with this
            assign_size(
                trial,
                cap=cap,
                seed=self.cfg.seed,
                min_fraction=space.min_size_fraction,
                aims=[a / cap for a in self.cfg.aims(cap)],
            )
        try:
            spec = sample_spec(
                trial,
                budget=cap,
                cfg=space,
                macs=limits.macs,
                activation=limits.activation,
                flat=flat_space(self.cfg.sampler),
            )
            return spec, recipe
        except Rejected as rej:
            trial.set_user_attr("rejected", rej.reason)
            trial.set_user_attr("rejected_by", rej.cap)
            trial.set_user_attr("params", rej.params)
            raise optuna.TrialPruned(f"rejected: {rej.reason}") from None

    def begin(self, trial: optuna.Trial) -> float | tuple[float, float] | Pending:
        """Everything before the training of ``trial``: its job, its candidate checked
        against its cap, a result the study or the cache holds (its values, or its pruning
        raised); else the training to run (``Pending``: ``finish`` it with its result, or
        ``ended`` if it raised). Raises ``TrialPruned`` for a rejected candidate, an idle
        trial or a pruned replay."""
        trial.set_user_attr("worker", WORKER)  # first: an idle trial says whose it was too
        source = self._job(trial)
        if source is not None and "cap" not in trial.user_attrs:
            trial.set_user_attr("cap", source.user_attrs.get("cap"))
        cap = assign_cap(trial, self.cfg.caps)
        rung = self.schedule.rungs[rung_of(trial)]
        spec, recipe = self._candidate(trial, cap, source)
        recipe = replace(recipe, epochs=rung.epochs)
        data = self.rung_data(rung)
        stats = analyze(spec)
        key = candidate_key(spec, recipe, {**self.data_fingerprint, "images": len(data.train)})
        trial.set_user_attr("spec", spec.to_json())
        trial.set_user_attr("summary", spec.summary())
        trial.set_user_attr("params", stats.params)
        trial.set_user_attr("macs", stats.macs)
        trial.set_user_attr("receptive_field", stats.receptive_field)
        trial.set_user_attr("activation", activation_memory(spec).peak)  # elements
        trial.set_user_attr("recipe", recipe.to_dict())
        over = self.cfg.limits(cap).over(spec)  # the trial's own caps, before anything is built
        if over is not None:
            trial.set_user_attr("rejected", over[1])
            trial.set_user_attr("rejected_by", over[0])
            raise optuna.TrialPruned(f"rejected: {over[1]}")
        trial.set_user_attr("key", key)
        earlier = _earlier(trial, key)
        if earlier is not None:
            return _reuse(trial, earlier, self.multi)
        # only a sampled candidate at rung 0 may be cut: a promotion earned its rung, and cut
        # after one epoch of a one-cycle schedule (its learning rate at its peak) it ranks
        # poorly; trained to the end, the two a search cut at its target would have finished
        # at 98.82% and 98.98%, the second above every network it kept (docs/benchmarks.md)
        prunable = not trial.user_attrs.get("reference") and source is None
        return self._start(trial, spec, recipe, data, prunable=prunable, params=stats.params)

    def _prune(self, trial: optuna.Trial, epoch: int, acc: float) -> bool:
        if self.multi:
            params, rung = trial.user_attrs.get("params"), rung_of(trial)
            banded = self.banded
            return banded is not None and banded.decide(trial.study, params, epoch, acc, rung=rung)
        trial.report(acc, epoch)
        return trial.should_prune()

    def _start(
        self,
        trial: optuna.Trial,
        spec: ArchSpec,
        recipe: TrainConfig,
        data: TrainVal,
        *,
        prunable: bool,
        params: int,
    ) -> float | tuple[float, float] | Pending:
        curve: list[float] = []
        epochs = recipe.epochs
        # below the steps it takes candidates to leave chance (the rungs' floor), a pruner
        # would cut by luck: on 1,293 images an epoch is 10 steps, and the candidates it cut
        # after one were at 9-15% (chance: 10%)
        images = len(data.train)

        def on_epoch(epoch: int, acc: float, loss: float) -> None:
            curve.append(acc)
            trial.set_user_attr("val_curve", curve)
            self.progress.epoch(trial.number, epoch, epochs, acc)
            ranks = rung_steps(epoch + 1, images, recipe.batch_size) >= self.cfg.min_rung_steps
            if prunable and epoch + 1 < epochs and ranks and self._prune(trial, epoch, acc):
                raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} at {acc:.4f}")

        trial.set_user_attr("device", str(self.device))
        # what this trial trains on, before its first epoch: a pruned or failed trial has
        # trained too (the epoch budget counts it); a retried copy's curve is not its own
        trial.set_user_attr("train_images", len(data.train))
        trial.set_user_attr("val_curve", curve)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        step = Pending(trial, Job(spec, data, recipe, on_epoch), params, time.perf_counter())
        try:
            lookup = cache_lookup(
                self.cache,
                spec,
                data,
                recipe,
                device=self.device,
                on_epoch=on_epoch,
                on_reuse=lambda: trial.set_user_attr("cached", True),
            )
        except BaseException:  # a replay the pruner stopped
            self.ended(step)
            raise
        step.lookup = lookup
        if lookup.result is not None:
            return self.finish(step, lookup.result)
        return step

    def ended(self, step: Pending) -> None:
        """What a training's end records, finished, pruned or failed: its wall time (with
        other trainings at once in this process: theirs too, and how many, ``at_once``) and
        the device's peak memory."""
        trial = step.trial
        trial.set_user_attr("wall_time_s", round(time.perf_counter() - step.started, 3))
        if step.at_once > 1:
            trial.set_user_attr("at_once", round(step.at_once, 3))
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
            trial.set_user_attr("peak_gpu_mem_mb", round(peak, 1))

    def finish(self, step: Pending, result: TrainResult) -> float | tuple[float, float]:
        """Record a finished training of ``step`` (written to the cache unless it came from
        there, its weights saved); the trial's values."""
        trial = step.trial
        self.ended(step)
        if step.lookup is not None and step.lookup.result is None:
            step.lookup.store(result)
        self.weights_dir.mkdir(parents=True, exist_ok=True)
        path = self.weights_dir / f"trial-{trial.number:05d}.pt"
        torch.save({k: v.cpu() for k, v in result.model.state_dict().items()}, path)
        trial.set_user_attr("weights", str(path.relative_to(self.cfg.out)))
        trial.set_user_attr("train_time_s", round(result.train_time_s, 3))
        trial.set_user_attr("device", result.device)
        trial.set_user_attr("loss_curve", result.loss_curve)
        return self.values(result.val_acc, step.params)


@dataclass
class Pending:
    """A trial ready to train: ``job`` (what ``train`` takes), its parameter count, when its
    training started, what the cache holds of it (``lookup``), and the mean number of
    trainings in flight in this process while it trained (``at_once``)."""

    trial: optuna.Trial
    job: Job
    params: int
    started: float
    lookup: Lookup | None = None
    at_once: float = 1.0


def _earlier(trial: optuna.Trial, key: str) -> FrozenTrial | None:
    for t in trial.study.get_trials(deepcopy=False, states=FINISHED):
        attrs = t.user_attrs
        if (
            attrs.get("key") == key
            and attrs.get("duplicate_of") is None
            and not attrs.get("rejected")
        ):
            return t
    return None


def _reuse(trial: optuna.Trial, earlier: FrozenTrial, multi: bool) -> float | tuple[float, float]:
    trial.set_user_attr("duplicate_of", earlier.number)
    for name in ("val_curve", "loss_curve", "weights", "train_images", "device"):
        if name in earlier.user_attrs:
            trial.set_user_attr(name, earlier.user_attrs[name])
    trial.set_user_attr("train_time_s", 0.0)
    if earlier.state == TrialState.PRUNED:
        raise optuna.TrialPruned(f"same candidate as trial {earlier.number}, which was pruned")
    acc = float(earlier.values[0])
    return (acc, float(earlier.user_attrs["params"])) if multi else acc
