"""`mlops-nb diff`: what comparing two runs costs, against what a user does by hand with nbdime alone.

Two runs of `pipelines/train.yaml` in a project of their own that differ in one parameter (n_estimators), then, in
interleaved rounds:

- **diff**: `mlops-nb diff A B`: parameters, metrics, context, packages, project code, and every step's executed
  notebook compared (nbdime, outputs included), read from MLflow;
- **diff --html**: the same, and nbdime's rendered diff page of each changed step written to a folder (offline);
- **nbdiff by hand**: the peer: `nbdiff` (nbdime's command) on each step's two executed notebooks, found on disk in
  the runs' folders. It says nothing about parameters, metrics, data, code or packages, and needs the two runs'
  step folders found by hand.

Each timing counts all the work the command started (`alltime.timed`). The ratio is against "nbdiff by hand".

Measured here (2026-12-07, 2 rounds, 2000 rows; 4 steps ran in both runs, 2 were cached in the second): diff 11.0 s
(0.66x), diff --html 10.7 s (0.64x, 4 step pages and an index), nbdiff by hand 16.7 s (4 commands, each importing
nbdime). Issue 37 set no target for it.
Run: `.venv/bin/python bench/diff.py [--rows 2000] [--rounds 3]`.
"""
from __future__ import annotations
import argparse, os, shutil, statistics, subprocess, sys, tempfile
from pathlib import Path
from alltime import become_subreaper, timed

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def project(root: Path) -> Path:
    "A copy of the project's settings and pipelines, committed to a fresh git repository (as a user's project is)."
    root.mkdir(parents=True)
    shutil.copy(REPO / "settings.ini", root / "settings.ini")
    shutil.copytree(REPO / "pipelines", root / "pipelines", ignore=shutil.ignore_patterns(".*"))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "p"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    return root


def pipeline_runs(root: Path) -> list[str]:
    from mlflow import MlflowClient

    c = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    exp = c.get_experiment_by_name("mlops-nb")
    found = c.search_runs([exp.experiment_id], "tags.mlops_nb.kind = 'pipeline'", order_by=["attributes.start_time ASC"])
    return [r.info.run_id for r in found]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    become_subreaper()
    d = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-diff-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    env["MLOPS_NB_KEEP_WARM"] = "0"  # no zygote kept for the next command: each timing ends with its command
    try:
        root = project(d / "p")
        for n in (20, 60):
            timed([BIN / "mlops-nb", "run", "pipelines/train.yaml", "-p", f"n_rows={a.rows}", "-p", f"n_estimators={n}"],
                  root, env)
        first, second = pipeline_runs(root)[-2:]
        pairs = []  # each step's two executed notebooks, as a user finds them in the runs' folders
        for nb in sorted((root / "runs" / first).glob("*/*.ipynb")):
            other = root / "runs" / second / nb.relative_to(root / "runs" / first)
            if other.is_file():
                pairs.append((nb, other))
        assert pairs, f"no executed notebook found under {root / 'runs' / first}"
        out = d / "html"
        jobs = {
            "mlops-nb diff": lambda: timed([BIN / "mlops-nb", "diff", first, second], root, env),
            "mlops-nb diff --html": lambda: timed([BIN / "mlops-nb", "diff", first, second, "--html", out], root, env),
            "nbdiff by hand": lambda: [timed([BIN / "nbdiff", x, y], root, env) for x, y in pairs],
        }
        times = {k: [] for k in jobs}
        for _ in range(a.rounds):  # interleaved: a busy moment weighs on every job alike
            for k, job in jobs.items():
                shutil.rmtree(out, ignore_errors=True)
                r = job()
                times[k].append(sum(x["done"] for x in r) if isinstance(r, list) else r["done"])
                if k == "mlops-nb diff --html":
                    pages = sorted(p.name for p in out.rglob("*.html"))
        base = statistics.median(times["nbdiff by hand"])
        print(f"comparing two runs of train.yaml ({a.rows} rows) that differ in n_estimators: {len(pairs)} steps, "
              f"median of {a.rounds} interleaved rounds (all the work each command started)")
        for k, ts in times.items():
            m = statistics.median(ts)
            print(f"  {k:22s}: {m:6.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})  ratio {m / base:4.2f}x")
        print(f"  --html wrote {len(pages)} page(s) ({', '.join(pages)}); nbdiff by hand ran {len(pairs)} times, one a step")
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
