"""What a search says at its start: the header line and the notes under it."""

from __future__ import annotations

import torch

from budgetnas.search.schedule.aims import DOMINATE, aim_of
from budgetnas.search.schedule.rungs import MIN_RUNG_STEPS, auto_rungs, rung_steps
from budgetnas.search.study.config import UNLIMITED, SearchConfig
from budgetnas.search.units import format_params
from budgetnas.space.count import count_params
from budgetnas.trainers.data import TrainVal


def header_line(
    cfg: SearchConfig, data: TrainVal, device: torch.device, *, done: int, concurrent: int
) -> str:
    """The search's first line: its caps, data, amount of work, rungs, device, precision,
    processes and candidates at once (and, resumed, how far it got)."""
    amounts = []
    if cfg.budget_time:
        amounts.append(f"{clock(cfg.budget_time)} of search")
    if cfg.budget_epochs:
        amounts.append(f"compute of {cfg.budget_epochs:g} trainings at the target")
    if cfg.trials < UNLIMITED or not amounts:
        amounts.append(f"{cfg.trials} candidates" + (" at most" if amounts else ""))
    amount = ", ".join(amounts)
    info = cfg.data.info
    shape = f"{info.in_channels}x{info.image_size}x{info.image_size}, {info.num_classes} classes"
    return (
        f"budgetnas: {caps_text(cfg.caps)}, "
        f"{info.name} ({shape}; {len(data.train):,} train / {len(data.val):,} val), "
        f"{amount}, {cfg.schedule.label()}, on {device}"
        + (f" in {cfg.recipe.precision}" if cfg.recipe.precision != "fp32" else "")
        + processes_text(cfg.workers, concurrent)
        + (f"; resuming after {done} candidates" if done else "")
    )


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def processes_text(workers: int, concurrent: int) -> str:
    """`` (2 trial processes, 4 candidates at once in each)``; nothing for one of each."""
    parts = [f"{workers} trial processes"] if workers > 1 else []
    if concurrent > 1:
        parts.append(f"{concurrent} candidates at once" + (" in each" if workers > 1 else ""))
    return f" ({', '.join(parts)})" if parts else ""


def caps_text(caps: tuple[int, ...]) -> str:
    """``cap 10,000 params (10K)``, or for a ladder ``caps 5K, 10K, 13K, 25K params``."""
    if len(caps) == 1:
        return f"cap {caps[0]:,} params ({format_params(caps[0])})"
    return f"caps {', '.join(format_params(c) for c in caps)} params"


def aims_line(cfg: SearchConfig) -> str | None:
    """``aims: 6,858 (70% of seed 001's), 5,971 (70% of seed 002's) params under 10,000: ...``;
    None without aims (``search.schedule.aims``)."""
    of = {aim_of(count_params(spec)): key for key, (spec, _) in cfg.reference_specs().items()}
    share = f"{DOMINATE:.0%}"
    parts = [
        ", ".join(f"{a:,} ({share} of seed {of[a]}'s)" for a in aims) + f" params under {cap:,}"
        for cap in cfg.caps
        if (aims := cfg.aims(cap))
    ]
    if not parts:
        return None
    return (
        f"aims: {'; '.join(parts)}: candidates are sized, promoted and raced there too, where "
        "one as accurate would dominate the seed network (--sizing spread: no aims)"
    )


def start_notes(cfg: SearchConfig) -> list[str]:
    """What a user should know at the start: the aims, fewer rungs than the default and why,
    how the test set is chosen, and when no seed network fits the data (no yardsticks then)."""
    notes = [line] if (line := aims_line(cfg)) else []
    rungs, why = auto_rungs(
        epochs=cfg.recipe.epochs,
        images=cfg.data.train_images,
        eta=cfg.eta,
        pruner=cfg.pruner,
        batch=cfg.recipe.batch_size if cfg.min_rung_steps else None,
    )
    if why is not None and cfg.rungs == rungs:
        what = "every candidate at the target" if rungs == 1 else f"{rungs} rungs"
        notes.append(f"note: {why}: {what} (--rungs {rungs})")
    low = cfg.schedule.rungs[0]
    steps = rung_steps(low.epochs, low.images, cfg.recipe.batch_size)
    if len(cfg.schedule.rungs) > 1 and steps < MIN_RUNG_STEPS:  # --rungs chosen by the user
        notes.append(
            f"note: rung 0 ({low.label()}) is {steps} optimizer steps, fewer than the "
            f"{MIN_RUNG_STEPS} it takes candidates to leave chance: its ranking is a lottery "
            "(leave --rungs out for rungs that rank)"
        )
    if cfg.data.test_note:
        notes.append(f"note: {cfg.data.test_note}")
    if cfg.references and not cfg.reference_specs():
        space = cfg.space_config
        notes.append(
            f"note: no seed network takes {space.in_channels}x{space.input_size}x"
            f"{space.input_size} images with {space.num_classes} classes under the cap: no "
            "reference networks in this search"
        )
    return notes
