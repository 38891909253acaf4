"""The microcontroller table of a run: every reference network and the best searched one,
exported to ONNX and int8 with ``budgetnas export --format onnx --int8``.

    python benchmarks/deploy_table.py runs/one-epoch-25k

Per network: parameters, MACs, peak activation memory (float32 / int8, as a runtime runs it:
conv+BN+ReLU fused, see ``space.memory``), float and int8 test accuracy measured by
onnxruntime, the largest |onnxruntime - torch| difference over the test set, and the file
sizes. The networks are the run's own trained trials (chosen by validation: the best sampled
trial under the cap); the test set only reports. Needs the deploy extra.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from budgetnas.reports.front.frame import trials_frame
from budgetnas.reports.front.pareto import best_row
from budgetnas.search.handback.export import export_trial
from budgetnas.search.study.runs import open_run
from budgetnas.space.memory import FLOAT32, INT8, activation_memory
from budgetnas.space.spec import ArchSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run")
    args = ap.parse_args()
    cfg, study = open_run(args.run)
    df = trials_frame(study.trials)
    refs = df[(df["state"] == "complete") & df["reference"].notna()]
    chosen = [(f"seed {r.reference}", int(r.number)) for r in refs.itertuples()]
    best = best_row(df[df["reference"].isna()], cap=cfg.cap)
    if best is not None:
        chosen.append((f"searched (trial {int(best['number'])})", int(best["number"])))
    print(
        f"{args.run}: {cfg.data.dataset}, {cfg.recipe.epochs} epoch(s) per network, "
        f"trained on {cfg.data.train_subset or 'all'} training images"
    )
    print(
        "| network | params | MACs | peak activation f32 / int8 | test acc float | test acc int8 "
        "| max abs diff | ONNX size float / int8 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, number in sorted(chosen, key=lambda c: c[1]):
            res = export_trial(
                args.run, out=Path(tmp) / f"t{number}.onnx", trial=number, format="onnx", int8=True
            )
            r = res.onnx
            spec = ArchSpec.from_json(study.trials[number].user_attrs["spec"])
            mem = activation_memory(spec)
            macs = int(study.trials[number].user_attrs["macs"])
            print(
                f"| {name} | {res.params:,} | {macs:,} | {mem.bytes(FLOAT32) / 1024:.1f} KB / "
                f"{mem.bytes(INT8) / 1024:.1f} KB | {r.onnx_acc:.2%} | {r.int8_acc:.2%} | "
                f"{r.max_abs_diff:.1e} | {r.size_bytes / 1024:.1f} KB / "
                f"{r.int8_size_bytes / 1024:.1f} KB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
