"""What the evidence adds to a train run: intervals, the paired test, permutation importance and SHAP on 20k held-out rows.

The demo data (80k rows, a quarter held out: 20k), the default boosted model, and each piece of evidence as the
evaluate and gate steps compute it, timed in this process (median of 3; all work is in-process, nothing detached).
Issue 34's budget: all of it under 10 s on this 2-core machine. Run: `.venv/bin/python bench/evidence_cost.py`.
Measured here (2026-12-07): 7.98 s (intervals 2.81, the paired test 3.30, permutation importance 1.73, SHAP 0.13),
plus importing shap once (~1.6 s; the warm kernels' zygote imports it before any step runs).
"""
from __future__ import annotations
import statistics, time
from mlops_nb.ml.data import make_demo_data, split_data
from mlops_nb.ml.evaluate import evaluate
from mlops_nb.ml.evidence import importance, metric_intervals, paired_difference
from mlops_nb.ml.explain import Explainer, shap_table
from mlops_nb.ml.models import build_model
from mlops_nb.ml.validate import infer_schema


def timed(fn, repeat: int = 3) -> float:
    "Median wall seconds of `fn()` over `repeat` calls."
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    train, test = split_data(make_demo_data(80_000, seed=1), "defect", "binary", 0.25, 42)
    schema = infer_schema(train, "defect", "binary")
    X, y = schema.select(test), test["defect"]
    fit = lambda rate: build_model(schema, "hgb", "binary", 42, learning_rate=rate).fit(schema.select(train), train.defect)
    champion, challenger = fit(0.1), fit(0.09)
    scored = lambda m: (m.predict(X), m.predict_proba(X))
    print(f"{len(X):,} held-out rows, {len(schema.features)} columns, hgb")
    rows = [
        ("the metrics themselves (evaluate)", lambda: evaluate(challenger, X, y, "binary")),
        ("bootstrap intervals of every metric (200)", lambda: metric_intervals(y, *scored(challenger), "binary", challenger.classes_)),
        ("the gate's paired test (500)", lambda: paired_difference("roc_auc", y, scored(champion), scored(challenger), "binary",
                                                                    challenger.classes_, n=500)),
        ("permutation importance (5,000 rows, 3 shuffles)", lambda: importance(challenger, X, y, "roc_auc", "binary", repeats=3)),
        # as the evaluate step does: 300 held-out rows explained (TreeExplainer), against training rows
        ("SHAP values and their summary (300 rows)", lambda: shap_table(Explainer(challenger, schema.select(train))(
            X.sample(300, random_state=0), toward=1))),
    ]
    added = 0.0
    for name, fn in rows:
        seconds = timed(fn)
        added += seconds if "themselves" not in name else 0.0
        print(f"  {name:<52} {seconds:6.2f} s")
    print(f"evidence added to a train run: {added:.2f} s (budget: 10 s)")


if __name__ == "__main__":
    main()
