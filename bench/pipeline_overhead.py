"""P1: `mlops-nb run pipelines/train.yaml` against the same computation as plain Python in one process.

Both sides do the same work on the default demo data: generate, hash, split, infer and check the schema,
fit, evaluate (metrics, slices, plots), log parent and nested runs to a fresh SQLite MLflow store,
log + register the model with its reference profile, then gate it and write its model card. Each side
runs once to warm up (OS caches, bytecode), then `--repeat` times in fresh temporary projects; the ratio
of medians is printed. Every timing counts all the work the command started (`bench/alltime.py`): "back" is
when the command returned, "all work" when the last process it started, detached or not, exited. Nothing is
asserted.

    .venv/bin/python bench/pipeline_overhead.py [--repeat 3] [--n-rows 5000]
"""
import argparse, os, shutil, statistics, sys, tempfile
from pathlib import Path
from alltime import become_subreaper, timed as run_all

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

PLAIN = r'''
import sys, time, joblib
from pathlib import Path
root, n_rows = Path(sys.argv[1]), int(sys.argv[2])
from mlops_nb.core.config import load_settings
from mlops_nb.ml.data import make_demo_data, content_hash, infer_task, split_data
from mlops_nb.ml.validate import infer_schema, check_data, require_valid
from mlops_nb.ml.models import build_model
from mlops_nb.ml.evaluate import evaluate, choose_slice_column, slice_metrics, slice_gap, save_plots
from mlops_nb.track.registry import register_model, make_challenger
from mlops_nb.track.gate import GateRules, run_gate
from mlops_nb.track.card import write_card
from mlops_nb.track import client as tracking
s = load_settings(root)
c = tracking.connect(s); exp = tracking.ensure_experiment(c, s)
parent = tracking.start_run(c, exp, "train-plain", {**tracking.git_state(root), **tracking.environment()})
c.log_text(parent, tracking.installed_packages(), "environment/requirements.txt")
step = lambda name: tracking.start_run(c, exp, name, parent_run_id=parent)
r = step("ingest")
df = make_demo_data(n_rows, seed=42); version = content_hash(df); task = infer_task(df["defect"])
train, test = split_data(df, "defect", task, 0.25, 42)
tracking.log_dataset(c, parent, df, "demo", "demo", version, "defect"); tracking.log_values(c, r, metrics={"rows": len(df)}); tracking.finish_run(c, r)
r = step("validate")
schema = infer_schema(train, "defect", task); require_valid(check_data(test, schema)); tracking.finish_run(c, r)
r = step("train")
X, y = train.drop(columns="defect"), train.defect
model = build_model(schema, "hgb", task, 42).fit(X, y)
tracking.log_values(c, r, metrics={f"train_{k}": v for k, v in evaluate(model, X, y, task).items()}); tracking.finish_run(c, r)
r = step("evaluate")
Xt, yt = test.drop(columns="defect"), test.defect
m = evaluate(model, Xt, yt, task); col = choose_slice_column(Xt); sl = slice_metrics(model, Xt, yt, task, col)
out = root / "plots"; save_plots(model, Xt, yt, task, out)
tracking.log_values(c, r, metrics={**{f"test_{k}": v for k, v in m.items()}, "slice_gap": slice_gap(sl, task)}); c.log_artifacts(r, str(out), "plots"); tracking.finish_run(c, r)
r = step("register")
from mlops_nb.ml.drift import make_profile
mv = register_model(c, r, s.model_name, model, X.head(5), schema, {"data_version": version}, profile=make_profile(X, model.predict(X), m, task, "defect"))
make_challenger(c, s.model_name, mv.version); tracking.finish_run(c, r)
r = step("gate")
run_gate(c, s.model_name, mv.version, GateRules.for_task(task), Xt, yt, task, col, run_id=parent)
write_card(c, s.model_name, mv.version, r, s.intended_use); tracking.finish_run(c, r); tracking.finish_run(c, parent)
'''


def project() -> Path:
    d = Path(tempfile.mkdtemp(prefix="mlops-nb-bench-"))
    shutil.copy(REPO / "settings.ini", d / "settings.ini")
    shutil.copytree(REPO / "pipelines", d / "pipelines", ignore=shutil.ignore_patterns(".*"))
    return d


def timed(cmd, cwd) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    r = run_all(cmd, cwd, env)
    shutil.rmtree(cwd, ignore_errors=True)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n-rows", type=int, default=5000)
    a = ap.parse_args()
    cli = lambda: timed([str(BIN / "mlops-nb"), "run", "pipelines/train.yaml", "-p", f"n_rows={a.n_rows}"], project())
    plain = lambda: (lambda d: timed([sys.executable, "-c", PLAIN, str(d), str(a.n_rows)], d))(project())
    become_subreaper()
    cli(); plain()  # warm-up
    t_cli, t_plain = [], []
    for _ in range(a.repeat):  # interleaved, so drift in machine load hits both sides alike
        t_cli.append(cli()); t_plain.append(plain())
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    print(f"P1 pipeline overhead, {a.n_rows} demo rows, median of {a.repeat} (fresh store each run; all work counted)")
    print(f"  {'':36} {'back':>8} {'all work':>9} {'cpu':>7}")
    for name, xs in (("mlops-nb run pipelines/train.yaml", t_cli), ("same computation, plain Python", t_plain)):
        print(f"  {name:36} {med(xs, 'back'):7.2f}s {med(xs, 'done'):8.2f}s {med(xs, 'cpu'):6.1f}s")
    print(f"  ratio (pipeline / plain), all work  : {med(t_cli, 'done') / med(t_plain, 'done'):6.2f}x   "
          f"(command back: {med(t_cli, 'back') / med(t_plain, 'done'):.2f}x)")


if __name__ == "__main__":
    main()
