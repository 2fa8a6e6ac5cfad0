"""Peers: one 5-step notebook pipeline as plain Python, as an mlops-nb pipeline, as a Ploomber pipeline and as DVC
stages running papermill, timed side by side in one interleaved run.

The steps (generate 20k rows, validate, features, train a gradient-boosted model, evaluate) are the same code for
every tool; only each notebook's `parameters` cell and the two lines that name its input and output files follow
the tool's convention. Ploomber and DVC run from their own virtualenv (`make bench-peers` makes `.venv-peers` from
bench/requirements-peers.txt); plain Python and mlops-nb from the project's.

Three situations, each tool in turn, repeated and rotated: **cold** (everything re-runs: `--force`), **no-op**
(nothing changed) and **late change** (one parameter of the last step changed: only it should re-run; plain
Python's figure is that step alone in a fresh process). Those run mlops-nb as on a fresh machine, each command
with a zygote of its own (`MLOPS_NB_KEEP_WARM=0`); the **kept** rows run the same three with the kernels' zygote
kept warm from the command before, as a second run on a workstation does (mlops-nb's default), its CPU counted.

Every timing counts all the work the command started. This process makes itself the subreaper of everything it
starts (Linux `PR_SET_CHILD_SUBREAPER`), so a detached process (rendering, a journal flush, a daemon) is reparented
to it and waited for: "back" is when the command returned, "all work" when its last descendant exited; "cpu" is the
user+system time of all of them. "peak" is the command process's own peak resident memory (the runner's overhead).
Nothing is asserted.

`--baseline COMMIT` also times mlops-nb as it was at that commit of this repository (cold, no-op, late change), on
today's installed dependencies, in a project of its own: `make bench-peers` gives 241dc2c, the code before the work
on these figures began (`PEERS_BASELINE=` leaves it out).

    make bench-peers            # or: .venv/bin/python bench/peers.py --peers-bin .venv-peers/bin [--repeat 5]
"""
import argparse, itertools, json, os, shutil, statistics, subprocess, sys, tempfile, textwrap
from pathlib import Path
from alltime import become_subreaper, children, resident, timed

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FILES = {"data": "data.parquet", "clean": "clean.parquet", "features": "features.parquet", "model": "model.joblib",
         "metrics": "metrics.json"}
# name, upstream steps, files read (name -> producing step), files written, parameters
STEPS = [
    ("generate", [], {}, ["data"], {"n_rows": 20000, "seed": 0}),
    ("validate", ["generate"], {"data": "generate"}, ["clean"], {}),
    ("features", ["validate"], {"clean": "validate"}, ["features"], {}),
    ("train", ["features"], {"features": "features"}, ["model"], {"max_iter": 100, "learning_rate": 0.1}),
    ("evaluate", ["features", "train"], {"features": "features", "model": "train"}, ["metrics"], {"threshold": 0.5}),
]
BODY = {
    "generate": """
        import numpy as np, pandas as pd
        rng = np.random.default_rng(seed)
        X = rng.normal(size=(n_rows, 8))
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
        df["group"] = rng.choice(list("abcd"), n_rows)
        noise = rng.normal(0, 1, n_rows)
        df["y"] = (X[:, 0] + 0.5 * X[:, 1] ** 2 - X[:, 2] * (df.group == "a") + noise > 0.5).astype(int)
        df.to_parquet(OUT["data"])
    """,
    "validate": """
        import pandas as pd
        df = pd.read_parquet(IN["data"])
        assert df.notna().all().all() and set(df.y.unique()) <= {0, 1}
        df[df.x0.between(-10, 10)].to_parquet(OUT["clean"])
    """,
    "features": """
        import pandas as pd
        df = pd.read_parquet(IN["clean"])
        df["x0_x1"], df["x2_sq"] = df.x0 * df.x1, df.x2 ** 2
        pd.get_dummies(df, columns=["group"], dtype=float).to_parquet(OUT["features"])
    """,
    "train": """
        import joblib, pandas as pd
        from sklearn.ensemble import HistGradientBoostingClassifier
        df = pd.read_parquet(IN["features"])
        train = df.iloc[: int(len(df) * 0.75)]
        model = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate, random_state=0)
        joblib.dump(model.fit(train.drop(columns="y"), train.y), OUT["model"])
    """,
    "evaluate": """
        import json, joblib, pandas as pd
        from sklearn.metrics import accuracy_score, roc_auc_score
        df, model = pd.read_parquet(IN["features"]), joblib.load(IN["model"])
        test = df.iloc[int(len(df) * 0.75):]
        p = model.predict_proba(test.drop(columns="y"))[:, 1]
        json.dump({"roc_auc": roc_auc_score(test.y, p), "accuracy": accuracy_score(test.y, p > threshold)},
                  open(OUT["metrics"], "w"))
    """,
}


def notebook(path: Path, parameters: str, io: str, body: str) -> None:
    "Write a notebook: a `parameters`-tagged cell, the cell naming its files, the step's code."
    cell = lambda src, tags=(): {"cell_type": "code", "execution_count": None, "id": f"c{abs(hash(src)) % 10**8}",
                                 "metadata": {"tags": list(tags)}, "outputs": [], "source": src}
    nb = {"cells": [cell(parameters, ["parameters"]), cell(io), cell(textwrap.dedent(body).strip())],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1))


def params_src(values: dict) -> str:
    return "".join(f"{k} = {v!r}\n" for k, v in values.items())


def make_mlops_nb(d: Path, threshold: float) -> list[str]:
    (d / "pipelines").mkdir(parents=True)
    (d / "settings.ini").write_text("[mlops_nb]\nexperiment = peers\n")
    spec = ["name: peers", "steps:"]
    for name, needs, reads, writes, values in STEPS:
        io = ("import json\nfrom pathlib import Path\nup = json.loads(upstream or '{}')\n"
              f"IN = {{n: str(Path(up[s]) / {FILES!r}[n]) for n, s in {reads!r}.items()}}\n"
              f"OUT = {{n: str(Path(out_dir) / {FILES!r}[n]) for n in {writes!r}}}\n")
        runner = 'out_dir = ""\nupstream = ""\nmlflow_run_id = ""\n'  # the names the runner injects
        notebook(d / "pipelines" / f"{name}.ipynb", params_src(values) + runner, io, BODY[name])
        spec.append(f"  - {{name: {name}, notebook: {name}.ipynb, needs: [{', '.join(needs)}]}}")
    (d / "pipelines" / "peers.yaml").write_text("\n".join(spec) + "\n")
    set_threshold("mlops-nb", d, threshold)
    run = [str(BIN / "mlops-nb"), "run", "pipelines/peers.yaml", "--params-file", "params.yaml"]
    return run


def make_ploomber(d: Path, threshold: float) -> None:
    d.mkdir(parents=True)
    for name, needs, reads, writes, values in STEPS:
        io = (f"IN = {{n: upstream[s][n] for n, s in {reads!r}.items()}}\n"
              "OUT = {k: v for k, v in product.items() if k != 'nb'}\n")
        ups = f"upstream = {needs!r}\n" if needs else "upstream = None\n"
        notebook(d / f"{name}.ipynb", params_src(values) + ups + "product = None\n", io, BODY[name])
    set_threshold("ploomber", d, threshold)


def make_dvc(d: Path, threshold: float, peers_bin: Path) -> None:
    d.mkdir(parents=True)
    (d / "out").mkdir()
    stages = {}
    for name, needs, reads, writes, values in STEPS:
        io = (f"IN = {{n: f'out/{{f}}' for n, f in {FILES!r}.items() if n in {list(reads)!r}}}\n"
              f"OUT = {{n: f'out/{{f}}' for n, f in {FILES!r}.items() if n in {writes!r}}}\n")
        notebook(d / f"{name}.ipynb", params_src(values), io, BODY[name])
        ps = " ".join(f"-p {k} ${{{name}.{k}}}" for k in values)
        stages[name] = {
            "cmd": f"{peers_bin / 'papermill'} -k python3 --log-level WARNING {name}.ipynb out/{name}.out.ipynb {ps}",
            "deps": [f"{name}.ipynb"] + [f"out/{FILES[n]}" for n in reads],
            "outs": [f"out/{FILES[n]}" for n in writes] + [{f"out/{name}.out.ipynb": {"cache": False}}],
            **({"params": [f"{name}.{k}" for k in values]} if values else {}),
        }
    import yaml
    (d / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    set_threshold("dvc", d, threshold)
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{peers_bin}:{os.environ['PATH']}"}
    subprocess.run([str(peers_bin / "dvc"), "init", "--no-scm", "-q"], cwd=d, env=env, check=True)


def set_threshold(tool: str, d: Path, threshold: float) -> None:
    "The late step's parameter, where each tool reads it from."
    import yaml
    values = {name: dict(v) for name, _, _, _, v in STEPS}
    values["evaluate"]["threshold"] = threshold
    if tool.startswith("mlops-nb"):
        (d / "params.yaml").write_text(f"threshold: {threshold}\n")
    elif tool == "dvc":
        (d / "params.yaml").write_text(yaml.safe_dump(values))
    elif tool == "ploomber":
        tasks = [{"source": f"{name}.ipynb",
                  "product": {"nb": f"out/{name}.out.ipynb", **{n: f"out/{FILES[n]}" for n in writes}},
                  **({"params": values[name]} if values[name] else {})} for name, _, _, writes, _ in STEPS]
        (d / "pipeline.yaml").write_text(yaml.safe_dump({"tasks": tasks}, sort_keys=False))


def plain_script(d: Path, steps: list[str], threshold: float) -> Path:
    "The steps' code in one Python file, files in `d`."
    lines = ["OUT = IN = {n: %r + '/' + f for n, f in %r.items()}" % (str(d), FILES)]
    for name, _, _, _, values in STEPS:
        if name in steps:
            values = {**values, **({"threshold": threshold} if name == "evaluate" else {})}
            lines += [params_src(values), textwrap.dedent(BODY[name])]
    (d / "plain.py").write_text("\n".join(lines))
    return d / "plain.py"


def baseline(ref: str, root: Path) -> Path:
    """This repository's `mlops_nb` as it was at git commit `ref`, in a folder to put first on PYTHONPATH: the runner,
    its zygote and its kernels then run that code, on today's installed dependencies."""
    dest = root / "baseline"
    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "mlops_nb"], capture_output=True)
    if archive.returncode:
        sys.exit(f"--baseline {ref}: {archive.stderr.decode().strip()} (give a commit of this repository's history)")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers-bin", default=str(REPO / ".venv-peers" / "bin"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--baseline", default="", metavar="COMMIT",
                    help="also time mlops-nb as it was at this commit of the repository (cold, no-op, late change)")
    a = ap.parse_args()
    become_subreaper()
    peers = Path(a.peers_bin).resolve()  # the tools run in their own folders
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-peers-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
    env |= {"DVC_NO_ANALYTICS": "1", "PLOOMBER_STATS_ENABLED": "false", "PYTHONWARNINGS": "ignore"}
    # cold means cold: each mlops-nb command starts its own zygote (and stops it); the "kept" rows let the zygote stay
    # warm between commands, one of this benchmark's own (PYTHONPATH, an empty folder, is part of its key)
    (root / "kept-key").mkdir()
    warm = {**env, "MLOPS_NB_KEEP_WARM": "600", "PYTHONPATH": str(root / "kept-key")}
    env |= {"MLOPS_NB_KEEP_WARM": "0"}
    penv = {**env, "PATH": f"{peers}:{env['PATH']}", "VIRTUAL_ENV": str(peers.parent)}
    mlops = make_mlops_nb(root / "mlops-nb", 0.5)
    make_ploomber(root / "ploomber", 0.5)
    make_dvc(root / "dvc", 0.5, peers)
    (root / "plain").mkdir()
    cold = {
        "plain": lambda: ([str(BIN / "python"), str(plain_script(root / "plain", [s[0] for s in STEPS], 0.5))], env),
        "mlops-nb": lambda: (mlops + ["--force"], env),
        "ploomber": lambda: ([str(peers / "ploomber"), "build", "--force"], penv),
        "dvc": lambda: ([str(peers / "dvc"), "repro", "--force", "-q"], penv),
    }
    noop = {"mlops-nb": lambda: (mlops, env), "ploomber": lambda: ([str(peers / "ploomber"), "build"], penv),
            "dvc": lambda: ([str(peers / "dvc"), "repro", "-q"], penv)}
    if a.baseline:  # the same pipeline, in a project of its own, run by the code of that commit
        name, then = f"mlops-nb@{a.baseline[:7]}", {**env, "PYTHONPATH": str(baseline(a.baseline, root))}
        old = make_mlops_nb(root / name, 0.5)
        cold[name], noop[name] = (lambda: (old + ["--force"], then)), (lambda: (old, then))
    fresh = itertools.count(51)  # thresholds in hundredths, each never run before: no cache has it

    def late(t: str):
        value = next(fresh) / 100
        if t == "plain":  # the changed step alone, in a fresh process
            return [str(BIN / "python"), str(plain_script(root / "plain", ["evaluate"], value))], env
        set_threshold(t, root / t, value)
        return noop[t]()

    situations = {"cold": cold, "no-op": noop, "late change": {t: (lambda t=t: late(t)) for t in cold},
                  "cold, kept": {"mlops-nb": lambda: (mlops + ["--force"], warm)},  # the zygote of the run before
                  "no-op, kept": {"mlops-nb": lambda: (mlops, warm)},
                  "late, kept": {"mlops-nb": lambda: (late("mlops-nb")[0], warm)}}
    results = {(t, s): [] for t in cold for s in situations}
    tools = list(cold)
    for rep in range(a.repeat + 1):  # the first round warms caches and is not counted
        order = tools[rep % len(tools):] + tools[: rep % len(tools)]
        for situation, commands in situations.items():
            for t in (t for t in order if t in commands):
                cmd, e = commands[t]()
                r = timed(cmd, root / t, e)
                if rep:
                    results[(t, situation)].append(r)
        print(f"round {rep} done{' (warm-up)' if not rep else ''}", file=sys.stderr, flush=True)
    base = {s: statistics.median(x["done"] for x in results[("plain", s)]) for s in ("cold", "late change")}
    base |= {"cold, kept": base["cold"], "late, kept": base["late change"]}
    print(f"\nThe same 5-step notebook pipeline, median of {a.repeat} interleaved rounds, on {os.cpu_count()} cores")
    print("back: the command returned; all work: its last descendant exited; cpu: user+system of all of them;")
    print("peak: the command process's own peak resident memory; ratio: all work against plain Python's\n")
    w = max(map(len, tools))
    print(f"{'situation':<12} {'tool':<{w}} {'back s':>7} {'all work s':>11} {'cpu s':>7} {'peak MB':>8} "
          f"{'detached':>8} {'ratio':>7}")
    for s in situations:
        for t in tools:
            xs = results[(t, s)]
            if not xs:
                continue
            med = lambda k: statistics.median(x[k] for x in xs)
            ratio = f"{med('done') / base[s]:6.2f}x" if s in base else ""
            print(f"{s:<12} {t:<{w}} {med('back'):7.2f} {med('done'):11.2f} {med('cpu'):7.2f} {med('peak_mb'):8.0f} "
                  f"{max(x['detached'] for x in xs):8d} {ratio:>7}")
    for pid in (x for x in children() if resident(x)):  # the kept zygote: this benchmark's own
        os.kill(pid, 9)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
