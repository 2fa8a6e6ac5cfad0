"""A user's own project, from an installed wheel in a folder of their own: `mlops-nb new`, `make run`, `make test`;
their own estimator and plain notebooks as steps; the model served, scored and bundled in fresh processes that
cannot import the project's package."""
import json, signal, subprocess, sys, urllib.request
from pathlib import Path
import pytest
from conftest import free_port, user_env, venv_from, wait_for_url, wait_until_up

pytestmark = pytest.mark.slow


def sh(args, cwd, env=None, timeout=900) -> subprocess.CompletedProcess:
    r = subprocess.run(list(map(str, args)), cwd=cwd, env=env or user_env(), capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def client(project: Path):
    from mlflow import MlflowClient
    uri = f"sqlite:///{project / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def test_new_project_passes_make_run_and_make_test(wheel_venv, tmp_path):
    sh([wheel_venv / "bin" / "mlops-nb", "new", "churn"], cwd=tmp_path)
    project = tmp_path / "churn"
    for f in ("pyproject.toml", "settings.ini", "Makefile", "README.md", ".gitignore", ".pre-commit-config.yaml",
              ".github/workflows/ci.yml", "notebooks/index.ipynb", "notebooks/01_models.ipynb", "churn/models.py",
              "pipelines/train.yaml", "pipelines/monitor.yaml", "tests/test_project.py"):
        assert (project / f).is_file(), f
    sh(["make", "run", f"VENV={wheel_venv}", "ARGS=-p n_rows=800"], cwd=project)
    c = client(project)
    assert str(c.get_model_version_by_alias("churn", "champion").version) == "1"  # the project's name, not the demo's
    assert c.get_experiment_by_name("churn") is not None and c.get_experiment_by_name("mlops-nb") is None
    r = sh(["make", "test", f"VENV={wheel_venv}"], cwd=project)
    assert "2 passed" in r.stdout


PLAIN_SPEC = """name: plain
metric: rows_prepared
steps:
  - {name: prepare, notebook: prepare.ipynb}
  - {name: summarise, notebook: summarise.ipynb, needs: prepare}
"""


def write_plain_notebooks(pipelines: Path) -> None:
    "Two notebooks that never import mlops_nb: one with no parameters cell at all, one declaring only what it uses."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    prepare = new_notebook(cells=[new_code_cell(
        "import mlflow, pandas as pd\ndf = pd.DataFrame({'x': range(10)})\nmlflow.log_metric('rows_prepared', len(df))")])
    params = new_code_cell("n: int = 3  # how many\nout_dir: str = 'out'  # where to write")
    params.metadata["tags"] = ["parameters"]
    summarise = new_notebook(cells=[params, new_code_cell(
        "import os\nos.makedirs(out_dir, exist_ok=True)\nopen(os.path.join(out_dir, 'n.txt'), 'w').write(str(n))")])
    nbformat.write(prepare, pipelines / "prepare.ipynb")
    nbformat.write(summarise, pipelines / "summarise.ipynb")
    (pipelines / "plain.yaml").write_text(PLAIN_SPEC)


def post_rows(url: str, n: int = 5) -> dict:
    from mlops_nb.ml.data import make_demo_data
    df = make_demo_data(n, seed=9).drop(columns="defect")
    body = {"dataframe_split": json.loads(df.to_json(orient="split", index=False, date_format="iso"))}
    req = urllib.request.Request(f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        return json.loads(r.read())


def serve(venv: Path, cwd: Path, *args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([str(venv / "bin" / "mlops-nb"), "serve", "--port", str(port), *map(str, args)], cwd=cwd,
                            env=user_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url, 180, proc)
    return proc, url


def stop(proc: subprocess.Popen) -> str:
    import os
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    return proc.communicate(timeout=60)[1]


def test_own_estimator_and_plain_steps_from_anywhere_served_scored_bundled_without_the_package(wheel_venv, tmp_path):
    mlops_nb, elsewhere = wheel_venv / "bin" / "mlops-nb", tmp_path / "elsewhere"
    sh([mlops_nb, "new", "acme"], cwd=tmp_path)
    project = tmp_path / "acme"
    elsewhere.mkdir()
    sh([wheel_venv / "bin" / "pip", "install", "-q", "--no-deps", "-e", project], cwd=tmp_path)  # as `make setup` does

    # plain notebooks as steps: no warnings, the notebook's own MLflow calls land in its step's run, files handed on
    write_plain_notebooks(project / "pipelines")
    r = sh([mlops_nb, "run", project / "pipelines" / "plain.yaml", "-p", "n=7"], cwd=elsewhere)
    assert "Passed unknown parameter" not in r.stdout + r.stderr and "StepIncomplete" not in r.stdout
    c = client(project)
    runs = c.search_runs([c.get_experiment_by_name("acme").experiment_id], "tags.mlops_nb.kind = 'step'")
    steps = {k.data.tags["mlops_nb.step"]: k for k in runs}
    assert steps["prepare"].data.metrics["rows_prepared"] == 10 and steps["prepare"].info.status == "FINISHED"
    # each plain step's kernel's peak memory, measured by the runner: in MLflow and in the summary's table
    assert all(20 < k.data.metrics["peak_memory_mb"] < 4000 for k in steps.values()), [k.data.metrics for k in runs]
    assert " MB " in r.stdout, r.stdout
    run_dir = project / c.get_run(steps["summarise"].data.tags["mlflow.parentRunId"]).data.tags["mlops_nb.run_dir"]
    assert (run_dir / "summarise" / "n.txt").read_text() == "7"
    assert json.loads((run_dir / "summarise" / "outputs.json").read_text()) == {"files": ["n.txt"]}
    listed = sh([mlops_nb, "runs"], cwd=project, env=user_env(COLUMNS="200"))
    assert "rows_prepared=10" in listed.stdout  # the spec's primary metric, logged by a plain notebook

    # the project's own estimator, trained from another folder: the project's store, names and folders
    sh([mlops_nb, "run", project / "pipelines" / "train.yaml", "-p", "n_rows=1500", "-p",
        "estimator=acme.models:BlendClassifier"], cwd=elsewhere)
    assert sorted(p.name for p in elsewhere.iterdir()) == []  # nothing written where the command was typed
    version = c.get_model_version_by_alias("acme", "champion")
    assert c.get_run(version.tags["pipeline_run_id"]).data.params["estimator"] == "acme.models:BlendClassifier"
    # the estimator's module, named only by the parameter, edited: train and what follows run again, and say why
    models = project / "acme" / "models.py"
    models.write_text(models.read_text().replace("weight: float = 0.5", "weight: float = 0.6"))
    r = sh([mlops_nb, "run", project / "pipelines" / "train.yaml", "-p", "n_rows=1500", "-p",
            "estimator=acme.models:BlendClassifier"], cwd=elsewhere)
    said = " ".join(r.stdout.split())
    assert "train ran: project file acme/models.py changed" in said and "ingest ran" not in said, said
    assert "↺ ingest" in r.stdout and "✓ train" in r.stdout

    # from here on the package cannot be imported: the model must carry it
    sh([wheel_venv / "bin" / "pip", "uninstall", "-y", "-q", "acme"], cwd=tmp_path)
    gone = subprocess.run([wheel_venv / "bin" / "python", "-c", "import acme"], cwd=elsewhere, env=user_env(),
                          capture_output=True)
    assert gone.returncode != 0

    proc, url = serve(wheel_venv, project)
    try:
        assert len(post_rows(url)["predictions"]) == 5
    finally:
        stop(proc)

    from mlops_nb.ml.data import make_demo_data
    make_demo_data(300, seed=5).drop(columns="defect").to_csv(elsewhere / "new.csv", index=False)
    sh([mlops_nb, "score", elsewhere / "new.csv", elsewhere / "scored.csv"], cwd=project)
    assert (elsewhere / "scored.csv").read_text().count("\n") == 301

    sh([mlops_nb, "bundle", tmp_path / "bundle"], cwd=project)
    # ONNX has no converter for the project's own estimator: refused, naming it, and nothing written
    r = subprocess.run([mlops_nb, "bundle", tmp_path / "onnx", "--format", "onnx"], cwd=project, env=user_env(),
                       capture_output=True, text=True)
    said = " ".join(r.stderr.split())
    assert r.returncode == 2 and "step 'model' (acme.models.BlendClassifier) has no ONNX converter" in said, said
    assert not (tmp_path / "onnx").exists() and not list(tmp_path.glob(".onnx.*"))
    assert (tmp_path / "bundle" / "model" / "code" / "acme" / "models.py").is_file()
    proc, url = serve(wheel_venv, elsewhere, "--model", tmp_path / "bundle")
    try:
        assert len(post_rows(url)["predictions"]) == 5
    finally:
        stop(proc)

    # a fresh environment made from nothing but the registered model's own requirements loads it and predicts
    model = tmp_path / "bundle" / "model"
    alone = venv_from(model / "requirements.txt", tmp_path / "model-venv")
    loads = ("import mlflow; m = mlflow.pyfunc.load_model('model'); "
             "print(len(m.predict(mlflow.models.Model.load('model').load_input_example('model'))))")
    assert sh([alone / "bin" / "python", "-c", loads], cwd=tmp_path / "bundle").stdout.split()[-1] == "5"  # its input example's rows
    assert "fastcore" in (model / "requirements.txt").read_text()  # the workbench's modules the model carries need it
    # ... and the bundle's README route: a fresh environment from its requirements.txt alone serves it
    served = venv_from(tmp_path / "bundle" / "requirements.txt", tmp_path / "bundle-venv")
    port = free_port()
    proc = subprocess.Popen([str(served / "bin" / "python"), "-m", "mlops_nb.cli.main", "serve", "--model", ".", "--port",
                             str(port)], cwd=tmp_path / "bundle", env=user_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", 180, proc)
        assert len(post_rows(f"http://127.0.0.1:{port}")["predictions"]) == 5
    finally:
        stop(proc)

    # a model that cannot load is said in the server's log, not only in its HTTP answers
    import shutil, time
    shutil.copytree(tmp_path / "bundle", tmp_path / "broken")
    (tmp_path / "broken" / "model" / "model.skops").write_bytes(b"not a model")
    log = tmp_path / "broken.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([str(mlops_nb), "serve", "--port", str(free_port()), "--model", str(tmp_path / "broken")],
                                cwd=elsewhere, env=user_env(), stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "cannot load" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "cannot load" in log.read_text() and "broken" in log.read_text(), log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            stop(proc)

    # MLflow's own server, as a team without mlops-nb's would serve it: in an environment MLflow makes with uv from the
    # model's requirements alone (its own contract for a model that must load anywhere)
    port, uv_bin = free_port(), Path(sys.executable).parent
    proc = subprocess.Popen([str(wheel_venv / "bin" / "mlflow"), "models", "serve", "-m", "models:/acme@champion",
                             "--env-manager", "uv", "--host", "127.0.0.1", "--port", str(port)], cwd=elsewhere,
                            env=user_env(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
                                         MLFLOW_ENV_ROOT=str(tmp_path / "mlflow-envs"),  # not in the user's home
                                         PATH=f"{wheel_venv / 'bin'}:{uv_bin}:{user_env()['PATH']}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/ping", 180, proc)
        assert len(post_rows(f"http://127.0.0.1:{port}")["predictions"]) == 5
    finally:
        stop(proc)


def test_a_model_class_defined_in_a_notebook_is_refused_with_what_to_do(project):
    "The train step fits a class defined in its own notebook: the step fails at once, saying what to do instead."
    nb = json.loads((project.root / "pipelines" / "train.ipynb").read_text())
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if "fitted = build_model(" in src:
            cell["source"] = ("from sklearn.linear_model import LogisticRegression\n\n\n"
                              "class Mine(LogisticRegression):\n    pass\n\n\n"
                              + src.replace("fitted = build_model(", "fitted = build_model(").replace(
                                  "started = time.perf_counter()",
                                  "fitted.steps[-1] = ('model', Mine(max_iter=500))\nstarted = time.perf_counter()"))
    (project.root / "pipelines" / "train.ipynb").write_text(json.dumps(nb))
    r = project.run("run", "pipelines/train.yaml", "-p", "n_rows=600")
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1 and "step 'train' failed" in out
    assert "Mine, which is defined in the notebook itself" in out and "Move it into the project's package" in out
    assert project.versions() == []
