"""Drift check speed: mlops-nb's check against Evidently's data drift preset, on the same data, in the same run.

Builds a reference and a current table of N rows x 25 columns (20 numeric, 5 categorical) with a
shift planted in 3 numeric and 1 categorical column, then times:
  - mlops-nb: `check_drift` of the current table against a profile of the reference (profiling is
    done once, at registration, and timed separately);
  - Evidently 0.7 `DataDriftPreset` on the same two tables, in its own virtualenv (Evidently needs
    pandas < 3; `make bench-drift` creates `.venv-evidently` from bench/requirements-evidently.txt).
Prints the times, the ratio, and which columns each flagged. Nothing is asserted.

    .venv/bin/python bench/drift.py [--rows 100000 1000000] [--evidently-python .venv-evidently/bin/python]
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHIFTED = ["num_00", "num_01", "num_02", "cat_0"]

EVIDENTLY = r'''
import json, sys, time
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
t = time.perf_counter()
snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
seconds = time.perf_counter() - t
flagged = []
for m in snap.dict()["metrics"]:
    name, value = m.get("metric_name", ""), m.get("value")
    cfg = m.get("config", {})
    if name.startswith("ValueDrift") and isinstance(value, (int, float)):
        thr, method = cfg.get("threshold"), str(cfg.get("method", ""))
        p_value = "p_value" in method or "test" in method.lower() and "distance" not in method.lower()
        if thr is not None and ((value < thr) if p_value else (value >= thr)): flagged.append(cfg.get("column"))
print(json.dumps({"seconds": seconds, "flagged": sorted(flagged)}))
'''


def tables(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    def make(shift: bool):
        cols = {f"num_{i:02d}": rng.normal(0.0, 1.0, n) for i in range(20)}
        if shift:
            for c in SHIFTED[:3]: cols[c] = cols[c] + 0.5
        for j in range(5):
            p = [0.4, 0.3, 0.2, 0.1] if not (shift and j == 0) else [0.2, 0.3, 0.2, 0.3]
            cols[f"cat_{j}"] = rng.choice(["a", "b", "c", "d"], n, p=p)
        return pd.DataFrame(cols)
    return make(False), make(True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--evidently-python", default=str(REPO / ".venv-evidently" / "bin" / "python"))
    args = ap.parse_args()
    from mlops_nb.ml.drift import check_drift, make_profile
    has_evidently = Path(args.evidently_python).is_file()
    if not has_evidently: print(f"Evidently not found at {args.evidently_python} (`make bench-drift` installs it): timing mlops-nb only")
    warm_ref, warm_cur = tables(2000)
    check_drift(make_profile(warm_ref), warm_cur)  # imports (scipy) out of the timing, as Evidently's are
    print(f"{'rows':>9} {'profile s':>10} {'mlops-nb s':>11} {'evidently s':>12} {'ratio':>7}  flagged (planted: {', '.join(SHIFTED)})")
    for n in args.rows:
        ref, cur = tables(n)
        t = time.perf_counter(); profile = make_profile(ref); t_profile = time.perf_counter() - t
        t = time.perf_counter(); report = check_drift(profile, cur); ours = time.perf_counter() - t
        line = f"{n:>9} {t_profile:>10.2f} {ours:>11.2f}"
        theirs = None
        if has_evidently:
            with tempfile.TemporaryDirectory() as d:
                ref.to_parquet(f"{d}/ref.parquet"); cur.to_parquet(f"{d}/cur.parquet")
                out = subprocess.run([args.evidently_python, "-c", EVIDENTLY, f"{d}/ref.parquet", f"{d}/cur.parquet"], capture_output=True, text=True)
            if out.returncode == 0: theirs = json.loads(out.stdout.strip().splitlines()[-1])
            else: print(f"Evidently failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}")
        if theirs: line += f" {theirs['seconds']:>12.2f} {theirs['seconds'] / ours:>6.1f}x"
        else: line += f" {'-':>12} {'-':>7}"
        print(f"{line}  mlops-nb: {', '.join(sorted(report.drifted))}" + (f"; evidently: {', '.join(theirs['flagged'])}" if theirs else ""))
        if theirs: print(f"{'':>9} same flags: {sorted(report.drifted) == theirs['flagged']}")


if __name__ == "__main__":
    main()
