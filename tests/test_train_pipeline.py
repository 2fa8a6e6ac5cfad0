"""The train pipeline end to end: what MLflow holds afterwards, and the registered model in a fresh process."""
import json, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
from conftest import clean_env, download
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
    reqs = download(project.client(), run_id, "environment/requirements.txt")
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
    assert plots == {"plots/confusion_matrix.png", "plots/roc_curve.png", "plots/importance.png", "plots/shap.png"}
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
    card = Path(download(c, gate.info.run_id, "model_card/card.md")).read_text()
    assert mv.description == card
    for fact in ("Flag assembly-line parts", mv.tags["data_version"], "## Held-out metrics", "| roc_auc |", "## Metrics by line",
                 "Decision: **passed**", "## Limitations", "Weakest slice: line ="):
        assert fact in card, fact
    gap = step_runs(project, run_id)["evaluate"].data.metrics["slice_gap"]  # the figure evaluate logged, not None
    assert f"Largest gap of the primary metric between slices: {gap:.4f}." in card
    evaluate = step_runs(project, run_id)["evaluate"]
    low, high = evaluate.data.metrics["test_roc_auc_low"], evaluate.data.metrics["test_roc_auc_high"]
    assert low < evaluate.data.metrics["test_roc_auc"] < high and f"| roc_auc | {evaluate.data.metrics['test_roc_auc']:.4f} | {low:.4f} .. {high:.4f} |" in card
    relies = pd.read_csv(download(c, evaluate.info.run_id, "importance.csv"))  # in raw columns
    # planted: edge_score responds to defects; vibration, heat, line, shift, certification and pressure cause them
    assert relies.column[0] == "edge_score" and set(relies.column[1:4]) & {"vibration", "temperature", "line"}, relies
    assert relies.set_index("column").importance["timestamp"] < relies.importance[0] / 10, relies
    assert "## What it relies on" in card and f"| {relies.column[0]} |" in card


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


def test_ui_opens_on_the_training_runs_table_and_the_run_reads_like_the_summary(trained, browser, tmp_path):
    """`mlops-nb ui` on 127.0.0.1 only, its address the model-training runs table; the pipeline run's page has the
    summary as its description and the registered version under registered models. Screenshots: test-artifacts/."""
    import os, re, signal, urllib.request
    from conftest import ARTIFACTS, MLOPS_NB, free_port, in_session, wait_for_url
    project, run_id = trained
    port, log = free_port(), tmp_path / "ui.log"
    with open(log, "w") as out:
        ui = subprocess.Popen([MLOPS_NB, "ui", "--port", str(port)], cwd=project.root, env=clean_env(), stdout=out,
                              stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_url(url, 180, ui)
        # MLflow's job runner (for its GenAI jobs) is started before the server answers; the workbench's UI has none
        assert not [c for c in in_session(ui.pid) if "mlflow.server.jobs" in c], in_session(ui.pid)
        req = urllib.request.Request(f"{url}/api/2.0/mlflow/runs/get?run_id={run_id}")
        body = json.loads(urllib.request.urlopen(req, timeout=10).read())
        assert body["run"]["info"]["status"] == "FINISHED"
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
        runs_table = re.search(rf"{url}/(#\S+)", log.read_text()).group(0)  # the address `mlops-nb ui` printed
        assert runs_table.endswith("/runs?workflowType=machine_learning"), runs_table

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(runs_table)
        row = page.locator(f"a[href*='/runs/{run_id}']").first  # the pipeline run's row (other tests add runs here)
        row.wait_for(timeout=120_000)
        assert page.evaluate("localStorage.getItem('mlflow.workflowType_v1')") == '"machine_learning"'  # the switch
        assert page.get_by_text("Model registry").first.is_visible()  # the training view's sidebar ...
        assert page.get_by_text("Evaluation runs").count() == 0 and page.get_by_text("Token usage").count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-runs.png"), full_page=True)

        row.click()  # a click drops the address's view ...
        page.get_by_text("Registered models").first.wait_for(timeout=120_000)
        assert page.get_by_text("Evaluation runs").count() == 0  # ... and the run still opens in the training view
        description = page.get_by_text("Primary metric:").first
        description.wait_for(timeout=60_000)
        assert re.search(r"train: FINISHED in [\d.]+ s\. Primary metric: roc_auc = 0\.\d+", description.inner_text())
        version = page.get_by_role("link", name="assembly-defect version 1")
        assert version.get_attribute("href").startswith("#/models/assembly-defect/versions/1")
        assert page.get_by_role("link", name="evaluate.html").count() == 1  # each step's executed notebook
        description.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "mlflow-ui-pipeline-run.png"))
        page.close()
    finally:
        os.killpg(ui.pid, signal.SIGTERM); ui.wait(30)
