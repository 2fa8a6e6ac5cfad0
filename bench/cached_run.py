"""P2: a second, unchanged `mlops-nb run pipelines/train.yaml` (every step cached): whole-process wall time.

Runs the pipeline once in a temporary project, then times the unchanged re-run `--repeat` times, against
two baselines measured in the same run: the bare interpreter start (`python -c pass`) and the first,
uncached run. Nothing is asserted.

    .venv/bin/python bench/cached_run.py [--repeat 5]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MLOPS_NB = str(Path(sys.executable).parent / "mlops-nb")


def timed(cmd, cwd) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0: sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    shutil.copy(REPO / "settings.ini", d / "settings.ini")
    shutil.copytree(REPO / "pipelines", d / "pipelines", ignore=shutil.ignore_patterns(".*"))
    run = [MLOPS_NB, "run", "pipelines/train.yaml"]
    first = timed(run, d)
    cached = [timed(run, d) for _ in range(a.repeat)]
    bare = statistics.median(timed([sys.executable, "-c", "pass"], d) for _ in range(a.repeat))
    m = statistics.median(cached)
    print(f"P2 unchanged re-run, every step cached, median of {a.repeat}")
    print(f"  mlops-nb run (all cached)    : {m:6.3f} s   runs: {', '.join(f'{t:.3f}' for t in cached)}   (issue 3 target: <= 1.0 s)")
    print(f"  python -c pass               : {bare:6.3f} s   ratio {m / bare:5.1f}x")
    print(f"  first run (nothing cached)   : {first:6.3f} s   ratio {m / first:5.3f}x")
    shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
