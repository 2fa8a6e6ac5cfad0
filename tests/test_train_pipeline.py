"""The train pipeline end to end: what MLflow holds afterwards, and the registered model in a fresh process."""
import json, subprocess, sys
from pathlib import Path
import pytest
from conftest import clean_env
from mlops_nb.ml.data import content_hash, make_demo_data

pytestmark = pytest.mark.slow
STEPS = ["ingest", "validate", "train", "evaluate", "register", "gate"]


def step_runs(project, parent_id):
    c = project.client()
    exp = c.get_run(parent_id).info.experiment_id
    runs = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent_id}'", order_by=["attributes.start_time ASC"])
    return {r.data.tags["mlops_nb.step"]: r for r in runs}


def test_parent_run_records_params_code_environment_and_data(trained):
    project, run_id = trained
    run = project.client().get_run(run_id)
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["mlops_nb.pipeline"] == "train"
    assert params["n_rows"] == "2000" and params["model"] == "hgb" and params["seed"] == "42"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head and tags["mlops_nb.git_dirty"] == "False"
    assert tags["mlops_nb.python"] == ".".join(map(str, sys.version_info[:3]))
    reqs = project.client().download_artifacts(run_id, "environment/requirements.txt")
    assert "scikit-learn==" in Path(reqs).read_text()
    digest = run.inputs.dataset_inputs[0].dataset.digest
    assert digest == content_hash(make_demo_data(2000, seed=42))[:36]
    assert run.data.metrics["test_roc_auc"] > 0.8 and run.data.metrics["registered_version"] == 1


def test_each_step_is_a_finished_nested_run_with_its_executed_notebook(trained):
    project, run_id = trained
    steps = step_runs(project, run_id)
    assert list(steps) == STEPS
    for name, r in steps.items():
        assert r.info.status == "FINISHED", name
        files = {f.path for f in project.client().list_artifacts(r.info.run_id, "notebook")}
        assert files == {f"notebook/{name}.ipynb", f"notebook/{name}.html"}, name
    assert steps["train"].data.params["model"] == "hgb"
    assert 0 < steps["evaluate"].data.metrics["test_accuracy"] <= 1
    assert "slice_gap" in steps["evaluate"].data.metrics
    plots = {f.path for f in project.client().list_artifacts(steps["evaluate"].info.run_id, "plots")}
    assert plots == {"plots/confusion_matrix.png", "plots/roc_curve.png"}
    assert steps["validate"].data.metrics["validation_errors"] == 0


def test_registered_version_has_lineage_and_aliases(trained):
    project, run_id = trained
    c = project.client()
    mv = c.get_model_version_by_alias("assembly-defect", "champion")
    assert str(mv.version) == "1"
    assert str(c.get_model_version_by_alias("assembly-defect", "challenger").version) == "1"
    assert mv.tags["pipeline_run_id"] == run_id
    assert mv.tags["data_version"] == content_hash(make_demo_data(2000, seed=42))
    assert mv.tags["git_commit"] == c.get_run(run_id).data.tags["mlflow.source.git.commit"]
    assert mv.tags["mlops_nb.gate"] == "passed"  # the first version has no champion to beat


def test_every_version_gets_a_model_card(trained):
    project, run_id = trained
    c = project.client()
    mv = c.get_model_version("assembly-defect", "1")
    gate = step_runs(project, run_id)["gate"]
    assert {f.path for f in c.list_artifacts(gate.info.run_id, "model_card")} == {"model_card/card.md", "model_card/card.html"}
    card = Path(c.download_artifacts(gate.info.run_id, "model_card/card.md")).read_text()
    assert mv.description == card
    for fact in ("Flag assembly-line parts", mv.tags["data_version"], "## Held-out metrics", "| roc_auc |", "## Metrics by line",
                 "Decision: **passed**", "## Limitations", "Weakest slice: line ="):
        assert fact in card, fact


def test_registered_model_loads_and_predicts_in_a_fresh_process(trained, tmp_path):
    project, _ = trained
    make_demo_data(50, seed=9).drop(columns="defect").to_parquet(tmp_path / "x.parquet")
    code = ("import sys, mlflow, pandas as pd; m = mlflow.pyfunc.load_model('models:/assembly-defect@champion');"
            "p = m.predict(pd.read_parquet(sys.argv[1])); print(len(p), sorted(set(p.tolist())))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.parquet")], cwd=tmp_path, capture_output=True, text=True,
                       env={"MLFLOW_TRACKING_URI": project.tracking, "PATH": "/usr/bin:/bin"}, timeout=300)
    assert r.returncode == 0, r.stderr
    n, classes = r.stdout.strip().split(" ", 1)
    assert n == "50" and set(json.loads(classes)) <= {0, 1}


def test_runs_and_show_list_what_was_recorded(trained):
    project, run_id = trained
    listing = project.run("runs", check=True).stdout
    assert run_id in listing and "FINISHED" in listing and "test_roc_auc" in listing and "assembly-defect:1" in listing
    shown = project.run("show", run_id, check=True).stdout
    for name in STEPS: assert name in shown
    html = project.root / "runs" / run_id / "evaluate" / "evaluate.html"
    assert html.is_file() and f"evaluate: {html}" in shown
    missing = project.run("show", "0" * 32)
    assert missing.returncode == 2 and "no run 000" in missing.stderr


def test_ui_serves_the_project_store_on_localhost(trained):
    import os, signal, urllib.request
    from conftest import MLOPS_NB, free_port, wait_until_up
    project, run_id = trained
    port = free_port()
    env = clean_env()
    ui = subprocess.Popen([MLOPS_NB, "ui", "--port", str(port)], cwd=project.root, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, 180, ui)
        req = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}")
        body = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert body["run"]["info"]["status"] == "FINISHED"
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        os.killpg(ui.pid, signal.SIGTERM); ui.wait(30)
