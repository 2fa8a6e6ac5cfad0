"""Scale: the train pipeline on 10k, 100k and 1M demo rows; time per row must not grow with size.

Each size runs in a fresh temporary project (cache empty). The ratio printed is the time per row at each
size against the time per row at the smallest size, measured in the same run. Nothing is asserted.

    .venv/bin/python bench/scale.py [--sizes 10000,100000,1000000]
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLOPS_NB = str(Path(sys.executable).parent / "mlops-nb")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    rows = []
    for n in map(int, a.sizes.split(",")):
        d = Path(tempfile.mkdtemp(prefix="mlops-nb-scale-"))
        shutil.copy(REPO / "settings.ini", d / "settings.ini")
        shutil.copytree(REPO / "pipelines", d / "pipelines", ignore=shutil.ignore_patterns(".*"))
        t = time.perf_counter()
        r = subprocess.run([MLOPS_NB, "run", "pipelines/train.yaml", "-p", f"n_rows={n}"], cwd=d, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - t
        if r.returncode != 0: sys.exit(f"n_rows={n} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        rows.append((n, elapsed))
        shutil.rmtree(d, ignore_errors=True)
        print(f"  {n:>9,} rows: {elapsed:7.2f} s  ({elapsed / n * 1e6:8.2f} us/row)", flush=True)
    base = rows[0][1] / rows[0][0]
    print("Scale: time per row relative to the smallest size (<= 1.0 means it does not grow)")
    for n, e in rows: print(f"  {n:>9,} rows: {e / n / base:6.3f}x")


if __name__ == "__main__":
    main()
