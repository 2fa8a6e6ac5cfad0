"""Scale: the train pipeline on a user's kind of table at 10k, 100k, 300k and 1M rows; time and peak memory per step.

The table is what people export, not the demo: 20 columns with an exported row number, dates written as text in two
formats, numbers stored as text with thousands separators, categoricals of low and high cardinality, missing values
everywhere, and a binary `Yes`/`No` target with gaps. It is written as CSV and trained with only
`-p data=... -p target=...`, each size in a fresh project (empty cache, new MLflow store). Per step: wall time from
its MLflow run, microseconds per row, and the step process's peak resident memory (`peak_memory_mb`, which the runner
records for every step). Then time per row at each size against the smallest, measured in the same run: <= 1.0
means it does not grow. Nothing is asserted.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,300000,1000000]
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MLOPS_NB = str(Path(sys.executable).parent / "mlops-nb")
STEPS = ("ingest", "validate", "train", "evaluate", "register", "gate")


def user_table(n: int, seed: int = 0) -> pd.DataFrame:
    "A 20-column table as people export it (see the module docstring)."
    rng = np.random.default_rng(seed)
    day = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1500, n), unit="D")
    region = rng.choice(["north", "south", "east", "west", "centre"], n)
    tenure = rng.gamma(2.0, 12.0, n).round(1)
    spend = rng.lognormal(6, 1.2, n).round(2)
    z = -3 + 0.03 * tenure - 0.0004 * spend + 0.8 * (region == "east") + rng.normal(0, 1, n)
    df = pd.DataFrame({
        "": np.arange(1, n + 1),  # the exported row number
        "signup": day.strftime("%Y/%m/%d"),
        "last_seen": (day + pd.to_timedelta(rng.integers(0, 86400 * 30, n), unit="s")).strftime("%Y-%m-%dT%H:%M:%S"),
        "region": region,
        "plan": rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1]),
        "city": rng.choice([f"city{i}" for i in range(400)], n),  # high cardinality
        "channel": rng.choice(["web", "app", "store", None], n),
        "tenure_months": tenure,
        "spend": [f"{v:,.2f}" for v in spend],  # numbers stored as text, with thousands separators
        "visits": rng.poisson(8, n),
        "support_calls": rng.poisson(1.2, n),
        "discount": rng.choice([0, 5, 10, 15], n),
        "age": rng.normal(41, 12, n).round(),
        "score_a": rng.normal(0, 1, n),
        "score_b": rng.normal(0, 1, n) + 0.3 * z,
        "score_c": rng.uniform(0, 1, n),
        "devices": rng.integers(1, 6, n),
        "newsletter": rng.choice([True, False], n),
        "rating": rng.choice(["1", "2", "3", "4", "5", "?"], n),  # numbers as text, '?' for missing
        "churned": np.where(rng.random(n) < 1 / (1 + np.exp(-z)), "Yes", "No"),
    })
    for col in ("age", "tenure_months", "score_a", "channel", "churned"):
        df.loc[rng.random(n) < 0.03, col] = None
    return df


def step_figures(root: Path) -> dict:
    "Wall seconds and peak memory of each step of the project's one pipeline run, from MLflow."
    from mlflow import MlflowClient
    uri = f"sqlite:///{root / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("mlops-nb")
    runs = c.search_runs([exp.experiment_id], "tags.mlops_nb.kind = 'step'")
    return {r.data.tags["mlops_nb.step"]: ((r.info.end_time - r.info.start_time) / 1000,
                                           r.data.metrics.get("peak_memory_mb", float("nan"))) for r in runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,300000,1000000")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    results = {}
    for n in map(int, a.sizes.split(",")):
        d = Path(tempfile.mkdtemp(prefix="mlops-nb-scale-"))
        shutil.copy(REPO / "settings.ini", d / "settings.ini")
        shutil.copytree(REPO / "pipelines", d / "pipelines", ignore=shutil.ignore_patterns(".*"))
        user_table(n).to_csv(d / "customers.csv", index=False)
        t = time.perf_counter()
        r = subprocess.run([MLOPS_NB, "run", "pipelines/train.yaml", "-p", "data=customers.csv", "-p",
                            "target=churned", "-p", "model_name=customers"], cwd=d, env=env, capture_output=True,
                           text=True)
        wall = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"{n} rows failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        results[n] = (wall, step_figures(d))
        shutil.rmtree(d, ignore_errors=True)
        print(f"{n:>9,} rows x 20 columns: the whole run {wall:6.1f} s", flush=True)
        for s in STEPS:
            sec, mb = results[n][1][s]
            print(f"    {s:<9} {sec:7.2f} s  {sec / n * 1e6:8.2f} us/row  peak {mb:7.0f} MB", flush=True)
    first = min(results)
    print("\nTime per row of each step relative to the smallest size (<= 1.0: it does not grow with size)")
    print("  rows       " + " ".join(f"{s:>9}" for s in STEPS))
    for n, (_, steps) in results.items():
        ratios = [steps[s][0] / n / (results[first][1][s][0] / first) for s in STEPS]
        print(f"  {n:>9,} " + " ".join(f"{x:8.3f}x" for x in ratios))


if __name__ == "__main__":
    main()
