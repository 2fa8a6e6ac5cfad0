"""A team on real infrastructure: two people's projects recording into one `mlflow server` on PostgreSQL at once."""
import json, os, subprocess, sys
import pytest
from conftest import MLOPS_NB, NO_JOB_RUNNER, clean_env, in_session, make_project

pytestmark = pytest.mark.slow
NAME = "assembly-defect"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    "PostgreSQL and `mlflow server --serve-artifacts` on it, brought up as a user does (`mlops-nb team up`)."
    from mlops_nb.ops.team import STACK_FILE, TeamStack, team_down
    folder = tmp_path_factory.mktemp("team") / "stack"
    up = subprocess.run([MLOPS_NB, "team", "up", folder, "--port", "0"], env=clean_env(), capture_output=True, text=True)
    assert up.returncode == 0, up.stdout + up.stderr
    stack = TeamStack.read(folder / STACK_FILE)
    assert stack.url in up.stdout and (folder / "db-password").read_text() not in up.stdout + up.stderr
    assert not [c for c in in_session(stack.server_pid) if "mlflow.server.jobs" in c]  # no GenAI job runner
    yield stack
    team_down(folder, forget=True)


def user_project(root, url):
    "A colleague's own folder: the project's pipelines, and settings that point at the team's server."
    project = make_project(root)
    import re
    ini = project.root / "settings.ini"
    ini.write_text(re.sub(r"(?m)^tracking_uri\s*=.*$", f"tracking_uri = {url}", ini.read_text()))
    return project


def test_two_people_record_at_once_into_one_server_and_one_registry(stack, tmp_path):
    from mlflow import MlflowClient
    projects = [user_project(tmp_path / who, stack.url) for who in ("ana", "ben")]
    runs = [subprocess.Popen([MLOPS_NB, "run", "pipelines/train.yaml", "-p", f"n_rows={1500 + 500 * i}", "-p", f"seed={i}"],
                             cwd=p.root, env=clean_env(MLOPS_NB_USER=p.root.name), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for i, p in enumerate(projects)]
    outs = [r.communicate(timeout=900)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], "\n".join(outs)

    c = MlflowClient(stack.url, stack.url)  # nothing shared but the URL
    exp = c.get_experiment_by_name("mlops-nb")
    assert exp.artifact_location.startswith("mlflow-artifacts:")  # artifacts go through the server
    pipelines = c.search_runs([exp.experiment_id], "tags.mlops_nb.kind = 'pipeline'")
    assert len(pipelines) == 2 and all(r.info.status == "FINISHED" for r in pipelines)
    for run in pipelines:
        steps = c.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        assert sorted(s.data.tags["mlops_nb.step"] for s in steps) == ["evaluate", "gate", "ingest", "register", "train", "validate"]
        assert all(s.info.status == "FINISHED" for s in steps)
        evaluate = next(s for s in steps if s.data.tags["mlops_nb.step"] == "evaluate")
        page = c.download_artifacts(evaluate.info.run_id, "notebook/evaluate.html", str(tmp_path))  # through the server
        assert open(page).read().startswith("<!doctype html>")

    versions = {str(v.version): v for v in c.search_model_versions(f"name = '{NAME}'")}
    assert sorted(versions) == ["1", "2"]
    assert {v.run_id for v in versions.values()} == {r.info.run_id for r in pipelines}  # each credited to its run
    champion = c.get_model_version_by_alias(NAME, "champion")
    events = [json.loads(v) for k, v in sorted(c.get_registered_model(NAME).tags.items()) if k.startswith("mlops_nb.history.")]
    gated = [e for e in events if e["by"] == "gate"]
    assert sorted(e["version"] for e in gated) == ["1", "2"]
    for e in gated:  # no gate moved the champion past a decision it did not see
        if e["action"] == "promote":
            judged = versions[e["version"]].tags.get("mlops_nb.gate.champion")
            assert e["previous"] == judged, (e, judged)
    promoted = [e for e in gated if e["action"] == "promote"]
    assert promoted and promoted[-1]["version"] == str(champion.version)
    # what differs between ana's run and ben's, each step's executed notebook downloaded through the server
    ana, ben = sorted(pipelines, key=lambda r: int(r.data.params["n_rows"]))
    d = subprocess.run([MLOPS_NB, "diff", ana.info.run_id, ben.info.run_id], cwd=projects[0].root, capture_output=True,
                       text=True, env=clean_env(MLOPS_NB_USER="ana", COLUMNS="160"))
    assert d.returncode == 0, d.stdout[-3000:] + d.stderr[-3000:]
    assert "n_rows" in d.stdout and "seed" in d.stdout and "│ ingest   │ changed" in d.stdout, d.stdout


@pytest.fixture(scope="module")
def guarded_server(tmp_path_factory):
    "`mlflow server --app-name basic-auth`: every caller must say who they are; new users may only read."
    import os, secrets, signal
    from conftest import free_port, wait_for_url
    d = tmp_path_factory.mktemp("basic-auth")
    (d / "auth.ini").write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{d}/auth.db\n"
                                "admin_username = admin\nauthorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    password, port = secrets.token_urlsafe(16), free_port()
    env = clean_env(MLFLOW_AUTH_CONFIG_PATH=str(d / "auth.ini"), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
                    MLFLOW_AUTH_ADMIN_PASSWORD=password, **NO_JOB_RUNNER)
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--backend-store-uri",
                             f"sqlite:///{d}/mlflow.db", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/health", 180, proc)
        yield url, password
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)


def test_a_server_that_asks_who_is_calling(guarded_server, tmp_path):
    "Missing, wrong and read-only credentials each get one clear message; the right ones run a pipeline."
    from test_own_project import write_plain_notebooks
    url, password = guarded_server
    project = user_project(tmp_path / "carla", url)
    write_plain_notebooks(project.root / "pipelines")

    def mlops_nb(*args, **creds):
        env = clean_env(COLUMNS="400", **{f"MLFLOW_TRACKING_{k.upper()}": v for k, v in creds.items()})
        return subprocess.run([MLOPS_NB, *map(str, args)], cwd=project.root, capture_output=True, text=True, timeout=600, env=env)

    nobody = mlops_nb("runs")
    assert nobody.returncode == 2 and "asks who is calling: set MLFLOW_TRACKING_USERNAME" in nobody.stderr, nobody.stderr
    wrong = mlops_nb("runs", username="admin", password="guess")
    assert wrong.returncode == 2 and "refused user 'admin'" in wrong.stderr and "Traceback" not in wrong.stderr
    ran = mlops_nb("run", "pipelines/plain.yaml", username="admin", password=password)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    listed = mlops_nb("runs", username="admin", password=password)
    assert listed.returncode == 0 and "plain" in listed.stdout and password not in listed.stdout + ran.stdout

    from mlflow.server.auth.client import AuthServiceClient
    os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=password)
    try:
        AuthServiceClient(url).create_user("reader", "reader-pass-123")
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME"); os.environ.pop("MLFLOW_TRACKING_PASSWORD")
    reader = mlops_nb("run", "pipelines/plain.yaml", "--no-cache", username="reader", password="reader-pass-123")
    assert reader.returncode == 2 and "does not let user 'reader' do this" in reader.stderr, reader.stdout + reader.stderr
    assert "Traceback" not in reader.stderr
    cached = mlops_nb("run", "pipelines/plain.yaml", username="reader", password="reader-pass-123")  # all steps cached
    assert cached.returncode == 2 and "does not let user 'reader' do this" in cached.stderr, cached.stdout + cached.stderr


def test_a_colleague_reuses_the_steps_someone_computed_on_another_machine(stack, tmp_path):
    "Dora trains; Eli, in a folder of his own, runs the same pipeline: every step comes from the server, named as Dora's."
    from mlflow import MlflowClient
    dora, eli = (user_project(tmp_path / who, stack.url) for who in ("dora", "eli"))
    args = [MLOPS_NB, "run", "pipelines/train.yaml", "-p", "n_rows=1200", "-p", "seed=7"]
    first = subprocess.run(args, cwd=dora.root, env=clean_env(MLOPS_NB_USER="dora", COLUMNS="200"), capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    second = subprocess.run(args, cwd=eli.root, env=clean_env(MLOPS_NB_USER="eli", COLUMNS="200"), capture_output=True, text=True)
    assert second.returncode == 0 and "(dora's)" in second.stdout, second.stdout + second.stderr

    c = MlflowClient(stack.url, stack.url)
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    runs = {r.data.tags["mlflow.user"]: r for r in c.search_runs([exp], "tags.mlops_nb.kind = 'pipeline' and tags.mlops_nb.spec = 'pipelines/train.yaml'")
            if r.data.params.get("seed") == "7"}
    steps = {who: {s.data.tags["mlops_nb.step"]: s for s in c.search_runs([exp], f"tags.mlflow.parentRunId = '{runs[who].info.run_id}'")}
             for who in ("dora", "eli")}
    assert len(steps["eli"]) == 6
    for name, s in steps["eli"].items():
        assert s.data.tags["mlops_nb.cached"] == "true" and s.data.tags["mlops_nb.cached_from"] == steps["dora"][name].info.run_id
        assert s.data.tags["mlops_nb.cached_by"].startswith("dora (pipeline run ")
        assert steps["dora"][name].data.tags["mlops_nb.shared"] == "complete"
    assert runs["eli"].data.metrics["test_roc_auc"] == runs["dora"].data.metrics["test_roc_auc"]
    fetched = eli.root / runs["eli"].data.tags["mlops_nb.run_dir"] / "ingest" / "test.parquet"
    assert fetched.is_file()  # brought to Eli's machine through the server
    local = subprocess.run(args, cwd=eli.root, env=clean_env(MLOPS_NB_USER="eli", COLUMNS="200"), capture_output=True, text=True)
    assert local.returncode == 0 and local.stdout.count("↺ from") == 6, local.stdout  # the third time: Eli's own cache
    eli_runs = [r for r in c.search_runs([exp], "tags.mlops_nb.kind = 'pipeline' and tags.`mlflow.user` = 'eli'")]
    assert len(eli_runs) == 2 and eli_runs[0].data.tags["mlops_nb.cached"] == "all"  # recorded before the command returned


def test_a_kept_data_file_comes_back_and_reproduce_reads_it_after_the_file_changed(tmp_path):
    "keep_data = yes: the file is kept once per version; after it changes, reproduce uses the kept copy (identical)."
    import re
    from mlops_nb.ml.data import make_demo_data
    project = make_project(tmp_path / "p")
    ini = project.root / "settings.ini"
    ini.write_text(re.sub(r"(?m)^keep_data\s*=.*$", "keep_data = yes", ini.read_text()))
    data = project.root / "parts.csv"
    make_demo_data(900, seed=5).to_csv(data, index=False)
    original = data.read_bytes()
    project.run("run", "pipelines/train.yaml", "-p", "data=parts.csv", check=True)
    project.run("run", "pipelines/train.yaml", "-p", "data=parts.csv", "--force", "train", check=True)
    c = project.client()
    assert len(c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], "tags.`mlops_nb.kind` = 'data'")) == 1
    first = project.pipeline_runs()[0]
    version = first.data.tags["mlops_nb.data.data"]

    make_demo_data(900, seed=6).to_csv(data, index=False)  # the file on disk changes afterwards
    rep = project.run("reproduce", first.info.run_id)
    assert rep.returncode == 0 and "identical" in rep.stdout and "data (data) restored" in rep.stdout, rep.stdout + rep.stderr
    got = project.run("data", "get", version[:12], tmp_path / "back", check=True)
    assert (tmp_path / "back" / "parts.csv").read_bytes() == original and "parts.csv" in got.stdout
    missing = project.run("data", "get", "00000000")
    assert missing.returncode == 2 and "no kept data version 00000000" in missing.stderr


@pytest.fixture(scope="module")
def cluster(stack, tmp_path_factory):
    """`dask scheduler` and two `dask worker`s, each in a folder of its own (their scratch space too): they share nothing
    with a project but the server."""
    import signal
    from distributed import Client
    from conftest import free_port
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    home = tmp_path_factory.mktemp("dask")
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], cwd=home, env=clean_env(TMPDIR=str(home)), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
    workers = {}
    for name in ("w1", "w2"):
        folder = home / name
        folder.mkdir()
        workers[name] = subprocess.Popen([dask, "worker", address, "--name", name, "--nthreads", "1", "--no-nanny",
                                          "--no-dashboard", "--local-directory", folder, "--host", "127.0.0.1"],
                                         cwd=folder, env=clean_env(PGPASSWORD=_password(stack)), stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        with Client(address, timeout="120s") as c:
            c.wait_for_workers(2, timeout=300)
            names = {w["name"]: a for a, w in c.scheduler_info()["workers"].items()}
        yield address, {n: (workers[n], names[n], home / n) for n in workers}
    finally:
        for p in [*workers.values(), scheduler]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(60)


def test_a_sweep_spreads_over_a_dask_cluster_that_shares_no_folder(stack, cluster, tmp_path):
    "Two sweep members at once on two workers: every step ships through the server and is recorded as a local one would be."
    from mlflow import MlflowClient
    address, workers = cluster
    project = user_project(tmp_path / "fay", stack.url)
    r = subprocess.run([MLOPS_NB, "run", "pipelines/train.yaml", "-p", "n_rows=1000", "-p", "seed=31", "--sweep",
                        "model=rf,hgb", "--executor", "dask", "--scheduler", address,
                        "--workers", "2"], cwd=project.root, env=clean_env(MLOPS_NB_USER="fay", COLUMNS="200"),
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    c = MlflowClient(stack.url, stack.url)
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    sweep = c.search_runs([exp], "tags.mlops_nb.kind = 'sweep' and tags.`mlflow.user` = 'fay'")[0]
    members = c.search_runs([exp], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    assert sweep.info.status == "FINISHED" and len(members) == 2 and all(m.info.status == "FINISHED" for m in members)
    steps = [s for m in members for s in c.search_runs([exp], f"tags.mlflow.parentRunId = '{m.info.run_id}'")]
    ran = [s for s in steps if s.data.tags.get("mlops_nb.cached") != "true"]
    names = [s.data.tags["mlops_nb.step"] for s in ran]
    assert len(steps) == 12 and names.count("ingest") == names.count("validate") == 1  # then cached, across workers
    assert names.count("register") == names.count("gate") == 2
    assert {s.data.tags["mlops_nb.worker"] for s in ran} == {a for _, a, _ in workers.values()}  # both workers
    for s in ran:
        assert s.info.status == "FINISHED" and s.data.tags["mlops_nb.outputs"] == "uploaded"
        name = s.data.tags["mlops_nb.step"]
        assert {a.path for a in c.list_artifacts(s.info.run_id, "notebook")} == {f"notebook/{name}.ipynb", f"notebook/{name}.html"}
    best = c.get_run(sweep.data.tags["mlops_nb.best_run"])
    assert (project.root / best.data.tags["mlops_nb.run_dir"] / "train" / "outputs.json").is_file()  # landed here
    for _, _, folder in workers.values():  # a worker keeps no step's copy of the project once it is done
        assert not [p for p in folder.iterdir() if p.name.startswith(("ingest-", "train-", "evaluate-"))]


def _password(stack) -> str:
    "The team database's password: a team's workers have it in their environment (or ~/.pgpass), as these do."
    from pathlib import Path
    return (Path(stack.folder) / "db-password").read_text().strip()


def test_a_search_runs_its_trials_on_the_teams_workers_with_its_study_in_postgresql(stack, cluster, tmp_path):
    "`--tune` against the team's server: the study in a database of the team's PostgreSQL, trials on workers that share no folder."
    import optuna
    from mlflow import MlflowClient
    from sqlalchemy import create_engine, text
    address, workers = cluster
    admin = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{stack.db_port}/mlflow", isolation_level="AUTOCOMMIT",
                          connect_args={"password": _password(stack)})
    with admin.connect() as db:
        db.execute(text("CREATE DATABASE optuna"))  # Optuna's tables beside MLflow's would share alembic's version table
    admin.dispose()
    project = user_project(tmp_path / "gus", stack.url)
    ini = project.root / "settings.ini"
    import re
    ini.write_text(re.sub(r"(?m)^search_storage\s*=.*$", f"search_storage = postgresql://postgres@127.0.0.1:{stack.db_port}/optuna",
                          ini.read_text()))
    r = subprocess.run([MLOPS_NB, "run", "pipelines/train.yaml", "-p", "n_rows=800", "-p", "seed=37", "--tune", "n_trials=4",
                        "--tune", "cv=2", "--tune", "n_estimators=int 20..40", "--executor", "dask", "--scheduler", address,
                        "--workers", "2"], cwd=project.root, env=clean_env(MLOPS_NB_USER="gus", COLUMNS="200", PGPASSWORD=_password(stack)),
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert _password(stack) not in r.stdout + r.stderr
    c = MlflowClient(stack.url, stack.url)
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    [search] = c.search_runs([exp], "tags.mlops_nb.kind = 'search' and tags.`mlflow.user` = 'gus'")
    trials = c.search_runs([exp], f"tags.mlflow.parentRunId = '{search.info.run_id}' and tags.mlops_nb.kind = 'trial'")
    assert search.info.status == "FINISHED" and len(trials) == 4
    assert {t.data.tags["mlops_nb.worker"] for t in trials} <= {a for _, a, _ in workers.values()}  # on the workers
    storage = f"postgresql+psycopg://postgres:{_password(stack)}@127.0.0.1:{stack.db_port}/optuna"
    study = optuna.load_study(study_name=search.data.tags["mlops_nb.search"], storage=storage)
    assert len(study.trials) == 4 and study.best_trial.params == json.loads(search.data.tags["mlops_nb.best_params"])
    assert not (project.root / "optuna.db").exists()


HOLD_SPEC = """name: hold
steps:
  - {name: make, notebook: make.ipynb}
  - {name: hold, notebook: hold.ipynb, needs: make}
"""


def test_a_worker_killed_mid_step_loses_nothing_and_the_step_runs_again_on_the_other(stack, cluster, tmp_path):
    "A plain notebook holds until told; its worker is killed; the scheduler gives the step to the other worker."
    import nbformat, signal, time
    from mlflow import MlflowClient
    from nbformat.v4 import new_code_cell, new_notebook
    address, workers = cluster
    project = user_project(tmp_path / "gil", stack.url)
    pipelines = project.root / "pipelines"
    nbformat.write(new_notebook(cells=[new_code_cell(
        "import os\nopen(os.path.join(os.environ['MLOPS_NB_OUT_DIR'], 'made.txt'), 'w').write('made')")]), pipelines / "make.ipynb")
    params = new_code_cell("gate: str = ''  # a folder: the step says it started there, and waits for 'go'")
    params.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[params, new_code_cell(
        "import json, os, pathlib, time\n"
        "made = json.loads(os.environ['MLOPS_NB_UPSTREAM'])['make']\n"
        "pathlib.Path(gate, f'started-{os.getpid()}').write_text('started')\n"
        "while not pathlib.Path(gate, 'go').exists():\n    time.sleep(0.1)\n"
        "text = open(os.path.join(made, 'made.txt')).read()\n"
        "open(os.path.join(os.environ['MLOPS_NB_OUT_DIR'], 'held.txt'), 'w').write(text + ' and held')")]), pipelines / "hold.ipynb")
    (pipelines / "hold.yaml").write_text(HOLD_SPEC)
    gate = tmp_path / "gate"
    gate.mkdir()
    run = subprocess.Popen([MLOPS_NB, "run", "pipelines/hold.yaml", "-p", f"gate={gate}", "--executor", "dask",
                            "--scheduler", address], cwd=project.root, env=clean_env(MLOPS_NB_USER="gil", COLUMNS="200"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def started(n):
        while len(found := sorted(gate.glob("started-*"))) < n:
            assert run.poll() is None, run.stdout.read()
            time.sleep(0.2)
        return found

    kernel = int(started(1)[0].name.split("-")[1])
    c = MlflowClient(stack.url, stack.url)
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    parent = c.search_runs([exp], "tags.mlops_nb.kind = 'pipeline' and tags.`mlflow.user` = 'gil'")[0]
    step = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.mlops_nb.step = 'hold'")[0]
    doomed = next(n for n, (_, a, _) in workers.items() if a == step.data.tags["mlops_nb.worker"])  # it signed the run
    os.kill(workers[doomed][0].pid, signal.SIGKILL)  # the machine it ran on goes away
    workers[doomed][0].wait(60)
    started(2)  # the scheduler gave the step to the other worker
    while os.path.exists(f"/proc/{kernel}") and open(f"/proc/{kernel}/stat").read().split()[2] != "Z":
        time.sleep(0.2)  # the lost worker's kernel saw its worker go and stopped: it records nothing more
    (gate / "go").touch()
    out = run.communicate(timeout=600)[0]
    assert run.returncode == 0, out
    assert "attempt 2: a worker was lost" in out
    parent = c.get_run(parent.info.run_id)
    steps = {s.data.tags["mlops_nb.step"]: s for s in c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")}
    survivor = next(a for n, (_, a, _) in workers.items() if n != doomed)
    assert parent.info.status == "FINISHED" and steps["make"].info.status == "FINISHED"
    assert steps["hold"].data.tags["mlops_nb.attempts"] == "2" and steps["hold"].data.tags["mlops_nb.worker"] == survivor
    held = project.root / parent.data.tags["mlops_nb.run_dir"] / "hold" / "held.txt"
    assert held.read_text() == "made and held"
