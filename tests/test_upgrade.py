"""Upgrades: a project made, run and registered with an earlier release (built here from its commit, installed in a
fresh venv) opens with this one: its runs and registry read, and its champion served with the same predictions."""
import io, json, os, signal, subprocess, sys, tarfile, urllib.request
from pathlib import Path
import pytest
from conftest import MLOPS_NB, REPO, clean_env, free_port, user_env, wait_until_up

pytestmark = pytest.mark.slow

PREVIOUS = "4d88880"  # the last release before the package was split into layers (`mlops_nb.features` then)
OLD_MLFLOW = "mlflow==3.10.1"  # an MLflow whose store schema is older than the one installed here


def _sh(args, cwd, env=None) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env or user_env(), capture_output=True, text=True)
    assert r.returncode == 0, f"{args[:3]} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def old_project(tmp_path_factory):
    "The previous release's wheel in a fresh venv, and a project it trained and registered a champion in."
    if subprocess.run(["git", "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], cwd=REPO, capture_output=True).returncode:
        pytest.skip(f"commit {PREVIOUS} is not in this checkout's history (a shallow clone): the old release is built from it")
    base = tmp_path_factory.mktemp("upgrade")
    source = base / "source"
    tar = subprocess.run(["git", "archive", PREVIOUS], cwd=REPO, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(source, filter="data")
    _sh([sys.executable, "-m", "build", "--wheel", "-o", base / "dist", source], base, clean_env())
    uv = Path(sys.executable).parent / "uv"
    _sh([uv, "venv", "--quiet", "--python", getattr(sys, "_base_executable", sys.executable), base / "old"], base)
    # with an older MLflow too (its store's schema is older): today's code and today's MLflow open what both left
    _sh([uv, "pip", "install", "--quiet", "--python", base / "old" / "bin" / "python", next((base / "dist").glob("*.whl")),
         OLD_MLFLOW, "sqlalchemy<2.1"], base)  # MLflow before 3.17 imports a pool SQLAlchemy 2.1 removed
    project = base / "project"
    project.mkdir()
    (project / "settings.ini").write_text((source / "settings.ini").read_text())
    subprocess.run(["cp", "-r", str(source / "pipelines"), str(project)], check=True)
    _sh([base / "old" / "bin" / "mlops-nb", "run", "pipelines/train.yaml", "-p", "n_rows=1500"], project)
    # what the old release says, read before today's code opens the store (and migrates it past the old MLflow)
    old = base / "old"
    run_id = json.loads(_sh([old / "bin" / "python", "-c", "import mlflow, json; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
                             "print(json.dumps([r.info.run_id for r in mlflow.search_runs(search_all_experiments=True, "
                             "output_format='list', filter_string=\"tags.`mlops_nb.kind` = 'pipeline'\")]))"], project).stdout)[0]
    from mlops_nb.ml.data import make_demo_data
    rows = make_demo_data(40, seed=21).drop(columns="defect")
    split = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))
    (base / "rows.json").write_text(json.dumps(split))
    theirs = json.loads(_sh([old / "bin" / "python", "-c",
        "import json, sys, mlflow, pandas as pd; mlflow.set_tracking_uri('sqlite:///mlflow.db'); "
        "s = json.load(open(sys.argv[1])); df = pd.DataFrame(s['data'], columns=s['columns']); "
        "df['timestamp'] = pd.to_datetime(df['timestamp']); "
        "print(json.dumps(mlflow.sklearn.load_model('models:/assembly-defect@champion').predict(df).tolist()))",
        base / "rows.json"], project).stdout.splitlines()[-1])
    return old, project, run_id, split, theirs


def test_a_project_of_the_previous_release_opens_and_its_champion_serves(old_project, tmp_path):
    old, project, run_id, split, theirs = old_project
    import sqlite3
    revision = lambda db: sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchone()[0]
    before = revision(project / "mlflow.db")
    opened = _sh([MLOPS_NB, "runs"], project)  # the first command migrates the store, keeping it as it was
    runs = opened.stdout
    assert "FINISHED" in runs and "train" in runs, runs
    kept = list(project.glob("mlflow.db.before-mlflow-*.bak"))
    assert len(kept) == 1 and "made by an older MLflow" in opened.stderr, opened.stderr
    from mlflow.store.db.utils import _get_latest_schema_revision
    assert revision(kept[0]) == before != revision(project / "mlflow.db") == _get_latest_schema_revision()
    assert "made by an older MLflow" not in _sh([MLOPS_NB, "runs"], project).stderr  # once
    shown = " ".join(_sh([MLOPS_NB, "show", run_id], project).stdout.split())
    assert f"train run {run_id}: FINISHED" in shown and "mlops-nb 0.1.0" in shown, shown
    assert "champion" in _sh([MLOPS_NB, "registry"], project).stdout
    # its run re-runs with today's library: its spec marks no step `registry: true`, so the steps that registered
    # (and those after) are left out, and a metric only today's library computes is new, not a difference
    said = " ".join(_sh([MLOPS_NB, "reproduce", run_id], project).stdout.split())
    assert "not re-run: register, gate" in said and "identical: all" in said, said
    # the champion was saved naming `mlops_nb.features.AsCategories`: today it is `mlops_nb.ml.features`'s
    port = free_port()
    proc = subprocess.Popen([MLOPS_NB, "serve", "--port", str(port), "--workers", "1"], cwd=project, env=user_env(),
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"), start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", 180, proc)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", json.dumps({"dataframe_split": split}).encode(),
                                     {"Content-Type": "application/json"})
        assert json.load(urllib.request.urlopen(req, timeout=60))["predictions"] == theirs
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
