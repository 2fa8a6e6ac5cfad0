"""False alarms and detections of monitoring: clean windows must stay quiet, planted shifts must be caught.

Two models are trained as the train pipeline trains them (schema, preprocessing, recipe, reference profile, held-out
metrics): a classifier on the assembly-line demo data with a free-text column added (sentences from a pool of 340 that
repeat) and an operator code (600 values, most of them rare), and a regressor on a house-price table with numbers, categories, a date, a listing time and a description.
Windows are then checked as `mlops-nb monitor` checks them (`ml.drift.check_drift` and `check_performance`, with the
model's predictions and the true labels):

- 50 clean windows: held-out rows, fresh rows from the same generator, and windows of consecutive traffic (one shift of
  parts, one afternoon of listings: an ordinary period, not a change). The false-alarm rate is the share that alert.
- 50 windows with planted shifts of a stated size: darker lighting, a changed mix of lines or districts, a numeric
  feature moved by half a standard deviation, text with new words, operators never seen, and labels that moved (the
  model got worse). The detection rate is the share that alert.

Goals (issue 33): false alarms <= 2 %, detection >= 95 %. Run: `.venv/bin/python bench/monitor_alarms.py`.
"""
from __future__ import annotations
import argparse, time
from dataclasses import dataclass
import numpy as np
import pandas as pd
from mlops_nb.ml.data import make_demo_data, split_data
from mlops_nb.ml.drift import Thresholds, check_drift, check_performance, make_profile
from mlops_nb.ml.evaluate import compute_metrics
from mlops_nb.ml.models import build_model
from mlops_nb.ml.validate import infer_schema

WORDS = ("part edge bolt paint weld surface finish line checked looks fine good clean even tight smooth straight "
         "aligned sealed coated polished fitted tested marked sorted packed").split()
SENTENCES = [" ".join(np.random.default_rng(i).choice(WORDS, 7)) for i in range(340)]  # the pool: each repeats
NEW_WORDS = "invoice refund courier parcel address late payment order ticket account".split()
OPERATORS = [f"OP-{i:03d}" for i in range(600)]  # many values, few of them common: a window meets some never seen
OPERATOR_SHARES = (w := 1 / np.arange(1, 601)) / w.sum()


def parts(n: int, seed: int, drift: float = 0.0, start: str = "2026-01-05 06:00", line_d: float = 0.0,
          new_words: float = 0.0, new_operators: float = 0.0) -> pd.DataFrame:
    "The demo's assembly-line parts with an inspector's remark and operator; optionally darker, more line D, new words."
    df = make_demo_data(n, seed, drift, start)
    rng = np.random.default_rng(seed + 1)
    if line_d:  # the mix of lines moves: a share `line_d` of the parts now come from line D
        df.loc[rng.random(n) < line_d, "line"] = "D"
    remarks = pd.Series(rng.choice(SENTENCES, n))
    if new_words:  # that share of the words are words never written before
        remarks = remarks.map(lambda s: " ".join(w if rng.random() >= new_words else rng.choice(NEW_WORDS)
                                                 for w in s.split()))
    operator = rng.choice(OPERATORS, n, p=OPERATOR_SHARES)
    if new_operators:  # that share of the parts made by operators never seen before
        operator = np.where(rng.random(n) < new_operators, [f"NEW-{i}" for i in rng.integers(0, 50, n)], operator)
    return df.assign(remark=remarks.to_numpy(), operator=operator)


DISTRICTS, SHARES = list("ABCDE"), [0.3, 0.25, 0.2, 0.15, 0.1]


def houses(n: int, seed: int, area_shift: float = 0.0, district_e: float = 0.0, new_words: float = 0.0,
           price_factor: float = 1.0, start: str = "2026-03-02 08:00") -> pd.DataFrame:
    "House sales: area, rooms, district, year built, listing time, a description, and the price."
    rng = np.random.default_rng(seed)
    area = rng.normal(110, 30, n).clip(25, None) + area_shift * 30  # area_shift in standard deviations
    district = rng.choice(DISTRICTS, n, p=SHARES)
    if district_e:
        district = np.where(rng.random(n) < district_e, "E", district)
    built = pd.to_datetime(rng.integers(1950, 2024, n).astype(str) + "-06-01")
    listed = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.uniform(0, n * 2.0, n)), unit="min")  # every ~2 min
    rooms = np.clip(np.round(area / 30 + rng.normal(0, 0.7, n)), 1, 8)
    bonus = pd.Series(district).map({"A": 60_000, "B": 20_000, "C": 0, "D": -15_000, "E": 40_000}).to_numpy()
    price = (area * 3_000 + rooms * 8_000 + bonus + (built.year.to_numpy() - 1950) * 900 + rng.normal(0, 25_000, n))
    text = pd.Series(rng.choice(SENTENCES, n))
    if new_words:
        text = text.map(lambda s: " ".join(w if rng.random() >= new_words else rng.choice(NEW_WORDS)
                                           for w in s.split()))
    return pd.DataFrame({"area": area.round(1), "rooms": rooms, "district": district, "built": built,
                         "listed": listed.round("s"), "description": text.to_numpy(),
                         "price": (price * price_factor).round(-2)})


@dataclass
class Trained:
    "A model as the train pipeline leaves it: its schema, the fitted pipeline and the reference profile."

    schema: object
    model: object
    profile: object


def train(df: pd.DataFrame, target: str, task: str, recipe: str = "hgb") -> tuple[Trained, pd.DataFrame]:
    "Split, infer the schema, fit, and profile as the pipeline's steps do; return the model and its held-out rows."
    tr, te = split_data(df, target, task, test_size=0.25, seed=42)
    schema = infer_schema(tr, target, task)
    model = build_model(schema, recipe, task, 42).fit(schema.select(tr), tr[target])
    X_test = schema.select(te)
    proba = model.predict_proba(X_test) if task != "regression" else None
    metrics = compute_metrics(te[target], model.predict(X_test), proba, task,
                              getattr(model, "classes_", None))
    X = schema.select(tr)
    return Trained(schema, model, make_profile(X, model.predict(X), metrics, task, target)), te


def alerts(t: Trained, window: pd.DataFrame, thresholds: Thresholds) -> tuple[bool, str]:
    "Whether the monitor alerts on `window` (with its labels), and its verdict."
    X, y = t.schema.select(window), window[t.profile.target]
    pred = t.model.predict(X)
    report = check_drift(t.profile, X, pred, thresholds)
    proba = t.model.predict_proba(X) if t.profile.task != "regression" else None
    report = check_performance(report, t.profile, y, pred, proba, getattr(t.model, "classes_", None))
    return report.alert, report.verdict()


def consecutive(df: pd.DataFrame, time_column: str, size: int, k: int) -> pd.DataFrame:
    "The k-th run of `size` consecutive rows, in time order."
    df = df.sort_values(time_column).reset_index(drop=True)
    return df.iloc[k * size:(k + 1) * size]


def clean_windows(p: Trained, p_test, h: Trained, h_test) -> list[tuple[str, Trained, pd.DataFrame]]:
    out = []
    for i in range(5):
        out.append(("parts: held-out rows", p, p_test.sample(500, random_state=i)))
        out.append(("houses: held-out rows", h, h_test.sample(500, random_state=i)))
    for i in range(10):
        out.append(("parts: fresh rows", p, parts(5000, 100 + i).sample(500, random_state=i)))
        out.append(("houses: fresh rows", h, houses(5000, 100 + i).sample(500, random_state=i)))
    for i in range(10):  # a shift of parts (800 parts, about 6.5 hours); an afternoon of listings (300, 10 hours)
        out.append(("parts: consecutive traffic (one shift)", p, consecutive(parts(6000, 200 + i), "timestamp", 800, i % 7)))
        out.append(("houses: consecutive traffic (one afternoon)", h, consecutive(houses(3000, 200 + i), "listed", 300, i)))
    return out


def planted_windows(p: Trained, h: Trained) -> list[tuple[str, Trained, pd.DataFrame]]:
    out = []
    for i in range(10):
        out.append(("parts: darker lighting (drift=0.5: brightness -25, 2 SD)", p,
                    consecutive(parts(6000, 300 + i, drift=0.5), "timestamp", 800, i % 7)))
        out.append(("houses: area +0.5 SD", h, houses(5000, 300 + i, area_shift=0.5).sample(500, random_state=i)))
        out.append(("houses: prices 20 % higher than the model learned", h,
                    houses(5000, 400 + i, price_factor=1.2).sample(500, random_state=i)))
    for i in range(5):
        out.append(("parts: line D from 15 % to 40 % of parts", p,
                    parts(5000, 500 + i, line_d=0.3).sample(500, random_state=i)))
        out.append(("parts: 25 % of the remarks' words new", p,
                    parts(5000, 600 + i, new_words=0.25).sample(500, random_state=i)))
        out.append(("houses: district E from 10 % to 40 %", h,
                    houses(5000, 700 + i, district_e=0.33).sample(500, random_state=i)))
        out.append(("parts: 10 % of parts by operators never seen", p,
                    parts(5000, 800 + i, new_operators=0.1).sample(500, random_state=i)))
    return out


def rates(windows, thresholds: Thresholds, show: bool) -> tuple[float, dict]:
    "The share of windows that alert, overall and per kind; each alerting window's verdict printed if `show`."
    by_kind: dict = {}
    for kind, t, w in windows:
        alert, verdict = alerts(t, w, thresholds)
        by_kind.setdefault(kind, []).append(alert)
        if show:
            print(f"    {'ALERT' if alert else 'quiet'}  {kind}: {verdict}")
    total = sum(sum(v) for v in by_kind.values()) / len(windows)
    return total, {k: (sum(v), len(v)) for k, v in by_kind.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--verbose", action="store_true", help="print every window's verdict")
    args = ap.parse_args()
    started = time.perf_counter()
    p, p_test = train(parts(5000, 42), "defect", "binary")
    h, h_test = train(houses(5000, 42), "price", "regression")
    thresholds = Thresholds()
    clean = clean_windows(p, p_test, h, h_test)
    planted = planted_windows(p, h)
    print(f"monitoring, as `mlops-nb monitor` judges a window (thresholds: {thresholds})")
    false_alarms, kinds = rates(clean, thresholds, args.verbose)
    print(f"\nclean windows: {len(clean)}; false-alarm rate {false_alarms:.0%} (goal <= 2 %)")
    for k, (n, of) in kinds.items():
        print(f"  {k:<50} {n} of {of} alerted")
    detected, kinds = rates(planted, thresholds, args.verbose)
    print(f"\nwindows with a planted shift: {len(planted)}; detection rate {detected:.0%} (goal >= 95 %)")
    for k, (n, of) in kinds.items():
        print(f"  {k:<58} {n} of {of} caught")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
