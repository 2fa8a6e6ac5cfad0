"""An Optuna search as a user runs it: `mlops-nb run pipelines/train.yaml --tune ...` in a project of their own, every
trial a nested MLflow run, one registered version of the best values, a killed search resumed."""
import contextlib, json, os, signal, subprocess, time
import pytest
from conftest import MLOPS_NB, clean_env, kill_left_behind, make_project

SEARCH = "tags.mlops_nb.kind = 'search'"


def children(client, run_id: str, kind: str):
    exp = client.get_run(run_id).info.experiment_id
    return client.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}' and tags.mlops_nb.kind = '{kind}'")


def study(project, name: str):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{project.root / 'optuna.db'}")


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("search"))
    r = project.run("run", "pipelines/train.yaml", "-p", "n_rows=1200", "--tune", "n_trials=6", "--tune", "cv=3",
                    "--tune", "n_estimators=int 20..60", "--workers", "2", check=True)
    return project, r


def test_a_search_nests_its_trials_and_registers_the_best_values_once(searched):
    project, r = searched
    c = project.client()
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    [search] = c.search_runs([exp], SEARCH)
    assert search.info.status == "FINISHED" and "6 trials:" in r.stdout
    trials = children(c, search.info.run_id, "trial")
    assert len(trials) == 6  # two processes, one study: n_trials in all
    states = {t.data.tags["mlops_nb.trial_state"] for t in trials}
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    for t in trials:
        folds = c.get_metric_history(t.info.run_id, "cv_roc_auc")
        done = t.data.tags["mlops_nb.trial_state"] == "COMPLETE"
        assert len(folds) == 3 if done else 1 <= len(folds) < 3  # a pruned trial stopped after its first folds
        assert {"model", "max_depth", "n_estimators"} <= set(t.data.params)
        assert ("learning_rate" in t.data.params) == (t.data.params["model"] == "hgb")  # the spec: "... if model=hgb"
    best = json.loads(search.data.tags["mlops_nb.best_params"])
    best_trial = max((t for t in trials if t.data.tags["mlops_nb.trial_state"] == "COMPLETE"),
                     key=lambda t: t.data.metrics["cv_roc_auc_mean"])
    assert best == {k: type(best[k])(v) for k, v in best_trial.data.params.items() if k in best}
    assert search.data.metrics["best_cv_roc_auc"] == pytest.approx(best_trial.data.metrics["cv_roc_auc_mean"])
    names = {a.path for a in c.list_artifacts(search.info.run_id)} | {a.path for a in c.list_artifacts(search.info.run_id, "plots")}
    assert {"trials.csv", "search.ipynb", "plots/search_history.png", "plots/search_slices.png"} <= names
    executed = json.loads((project.root / "runs" / search.info.run_id / "search.ipynb").read_text())  # its notebook
    outputs = [o for cell in executed["cells"] if cell["cell_type"] == "code" for o in cell["outputs"]]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2 and not any(o["output_type"] == "error" for o in outputs)
    assert any(f"6 trials; the best is trial {best_trial.data.tags['mlops_nb.trial']}" in "".join(o.get("text", ""))
               for o in outputs)
    [trained] = [p for p in children(c, search.info.run_id, "pipeline") if "mlops_nb.search" in p.data.tags]
    assert {k: trained.data.params[k] for k in best} == {k: str(v) for k, v in best.items()}
    assert project.versions() == [1]  # one registered version per search, not one per trial
    found = json.loads(trained.data.tags["mlops_nb.search"])
    assert found["trials"] == 6 and found["search_run"] == search.info.run_id
    card = (project.root / "runs" / trained.info.run_id / "gate" / "card.md").read_text()  # the gate writes it
    assert "## How it was found" in card and "6 trials" in card
    assert len(study(project, search.data.tags["mlops_nb.search"]).trials) == 6  # the study beside the store


def test_runs_compare_of_a_search_shows_its_trials_by_their_cross_validated_score(searched, tmp_path):
    "The search's id stands for its trials, not for the pipeline runs it also nests (its data steps, the best values)."
    from mlops_nb.runner.diff import compare_runs
    project, _ = searched
    c = project.client()
    [search] = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], SEARCH)
    trials = {t.info.run_id: t for t in children(c, search.info.run_id, "trial")}
    table, metric, goal = compare_runs(c, [search.info.run_id])
    assert (metric, goal) == ("cv_roc_auc_mean", "max") and set(table["run_id"]) == set(trials)
    assert {"model", "max_depth", "n_estimators"} & set(table.columns) and "cv_folds" not in table.columns
    scores = [trials[i].data.metrics["cv_roc_auc_mean"] for i in table["run_id"]]
    assert list(table[metric]) == scores == sorted(scores, reverse=True)  # best first
    r = project.run("runs", "--compare", search.info.run_id, "--plot", tmp_path / "trials.png", check=True)
    assert "6 runs by cv_roc_auc_mean (higher is better)" in r.stdout and (tmp_path / "trials.png").stat().st_size > 5000


def test_a_killed_search_resumes_without_redoing_its_finished_trials(tmp_path):
    """...and what the killed one left in the temporary folder (the search notebook's cold kernel's connection file) is
    gone once the resumed one ends: the two have a TMPDIR of their own, and a zygote of their own."""
    project = make_project(tmp_path / "p")
    tune = ["--tune", "n_trials=14", "--tune", "n_estimators=int 20..60"]
    args = [MLOPS_NB, "run", "pipelines/train.yaml", "-p", "n_rows=1200", *tune, "--workers", "1"]
    log, own = tmp_path / "search.log", {"TMPDIR": str(tmp_path / "tmp"), "MLOPS_NB_KEEP_WARM": "0"}
    (tmp_path / "tmp").mkdir()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=project.root, env=clean_env(**own), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline, name = time.monotonic() + 300, None
        while time.monotonic() < deadline and proc.poll() is None:
            name, finished = _finished(project)
            if finished >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, f"the search ended before it could be killed:\n{log.read_text()[-3000:]}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        kill_left_behind(proc.pid)
    before = {t.number: t.params for t in study(project, name).trials if t.state.name in ("COMPLETE", "PRUNED")}
    r = project.run("run", "pipelines/train.yaml", "-p", "n_rows=1200", *tune, "--resume", check=True, env=own)
    assert not list((tmp_path / "tmp").iterdir())  # the resumed search removed what the killed one left
    s = study(project, name)
    kept = {t.number: t.params for t in s.trials if t.number in before}
    assert kept == before  # the finished trials are kept as they were
    counted = [t for t in s.trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(counted) == 14 and "resumed" in r.stdout
    c = project.client()
    [search] = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], SEARCH)
    assert search.info.status == "FINISHED" and search.data.tags["mlops_nb.search"] == name
    assert len(children(c, search.info.run_id, "trial")) == 14 and project.versions() == [1]


def _finished(project) -> tuple[str | None, int]:
    "The study in the project's optuna.db and how many of its trials finished, read only (a reader creates nothing)."
    import sqlite3
    db = project.root / "optuna.db"
    if not db.is_file():
        return None, 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            [name] = con.execute("SELECT study_name FROM studies").fetchone() or [None]
            [n] = con.execute("SELECT count(*) FROM trials WHERE state IN ('COMPLETE', 'PRUNED')").fetchone()
        return name, n
    except sqlite3.OperationalError:  # the search is still creating the tables
        return None, 0


@pytest.mark.parametrize("tune, message", [
    (["--tune", "max_depth=float 0.5..2"], "float values for a parameter of type int"),
    (["--tune", "model=choice rf,xgb"], "must be one of linear, rf, hgb"),
    (["--tune", "trials=5"], "neither a search setting"),
    (["--resume"], "no unfinished search of 'train'"),
])
def test_a_bad_search_is_refused_before_anything_runs(searched, tune, message):
    project, _ = searched
    runs = len(project.pipeline_runs())
    r = project.run("run", "pipelines/train.yaml", *tune)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert len(project.pipeline_runs()) == runs


def test_a_search_on_a_data_file_registers_the_model_named_after_it(tmp_path):
    """As a plain run does: the best values' model lands under the data file's name, not the project's model. Cold kernels
    start as each step begins, from this process's environment then: the search's notebook, drawn beside the steps,
    must not change it (it once took the settings away from the steps that started after it)."""
    from mlops_nb.ml.data import make_demo_data
    project = make_project(tmp_path / "p")
    make_demo_data(900, seed=5).to_csv(project.root / "parts.csv", index=False)
    r = project.run("run", "pipelines/train.yaml", "-p", "data=parts.csv", "--tune", "n_trials=4", "--tune", "cv=2",
                    "--tune", "n_estimators=int 20..40", "--workers", "2", "--cold", check=True)
    assert "model 'parts', named after the data file" in r.stdout
    assert [int(v.version) for v in project.client().search_model_versions("name = 'parts'")] == [1]
    assert project.versions() == []  # nothing under the project's own model
