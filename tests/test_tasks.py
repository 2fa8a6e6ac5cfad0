"""The same pipeline on a user's own file: multiclass from Parquet, regression from CSV."""
import pytest
from mlops_nb.ml.data import make_demo_data

pytestmark = pytest.mark.slow


def finished_metrics(project, name):
    run = project.pipeline_runs()[-1]
    assert run.info.status == "FINISHED"
    assert str(project.client().get_model_version_by_alias(name, "champion").version) == "1"
    return run.data.metrics


def test_multiclass_target_from_parquet(project):
    data = project.root / "parts.parquet"
    make_demo_data(1200, seed=5).to_parquet(data)
    project.run("run", "pipelines/train.yaml", "-p", f"data={data.name}", "-p", "target=line", "-p", "model=rf",
                "-p", "n_estimators=30", "-p", "slice_by=shift", "-p", "model_name=line-model", check=True)
    metrics = finished_metrics(project, "line-model")
    assert 0 <= metrics["test_f1_macro"] <= 1
    evaluate = project.client().search_runs([project.pipeline_runs()[-1].info.experiment_id], "tags.mlops_nb.step = 'evaluate'")[0]
    assert "test_log_loss" in evaluate.data.metrics and evaluate.data.params["slice_column"] == "shift"


def test_regression_target_from_csv_with_missing_values(project):
    data = project.root / "parts.csv"
    df = make_demo_data(1200, seed=6)
    df.loc[::7, "pressure"] = None
    df.to_csv(data, index=False)
    project.run("run", "pipelines/train.yaml", "-p", f"data={data}", "-p", "target=temperature", "-p", "model=linear",
                "-p", "model_name=temperature-model", check=True)
    metrics = finished_metrics(project, "temperature-model")
    assert metrics["test_rmse"] > 0
    run = project.pipeline_runs()[-1]
    assert run.data.params["task"] == "auto"
    steps = project.client().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    ingest = next(s for s in steps if s.data.tags["mlops_nb.step"] == "ingest")
    assert ingest.data.params["resolved_task"] == "regression"


def test_a_declared_primary_metric_judges_the_run_the_gate_and_the_registry(project):
    "primary_metric = test_mae (a setting, here given with -p): evaluate, gate, runs and registry all use MAE."
    data = project.root / "parts.csv"
    make_demo_data(1200, seed=6).to_csv(data, index=False)
    args = ["run", "pipelines/train.yaml", "-p", f"data={data}", "-p", "target=temperature", "-p", "model=linear",
            "-p", "model_name=mae-model", "-p", "primary_metric=test_mae"]
    r = project.run(*args, check=True)
    assert "test_mae=" in r.stdout and "mae" in " ".join(r.stdout.split())
    run = project.pipeline_runs()[-1]
    assert run.data.tags["mlops_nb.metric"] == "test_mae" and run.data.tags["mlops_nb.metric_goal"] == "min"
    listed = " ".join(project.run("runs", check=True).stdout.split())
    assert f"test_mae={run.data.metrics['test_mae']:.4f}" in listed
    c = project.client()
    v = c.get_model_version_by_alias("mae-model", "champion")
    assert v.tags["mlops_nb.metric"].startswith("mae=") and v.tags["mlops_nb.gate.mae"]  # the gate compared MAE
