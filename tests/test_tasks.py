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
                "-p", "model_name=temperature-model", "-p", "cv=3", "-p", "group_by=line", check=True)
    metrics = finished_metrics(project, "temperature-model")
    assert metrics["test_rmse"] > 0
    run = project.pipeline_runs()[-1]
    assert run.data.params["task"] == "auto"
    steps = project.client().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    ingest = next(s for s in steps if s.data.tags["mlops_nb.step"] == "ingest")
    assert ingest.data.params["resolved_task"] == "regression"
    evaluate = next(s for s in steps if s.data.tags["mlops_nb.step"] == "evaluate")  # k-fold, no line on both sides
    assert evaluate.data.params["cv_folds"] == "3 folds grouped by line" and evaluate.data.metrics["cv_rmse_std"] > 0
    assert abs(evaluate.data.metrics["cv_rmse_mean"] - metrics["test_rmse"]) < metrics["test_rmse"]


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


def test_an_own_pipeline_registering_through_mlflow_is_named_in_its_hints_and_in_runs(project):
    "A step notebook of one's own registers its model with MLflow's API: the summary, the hints and `runs` name it."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    params = new_code_cell("data: str = ''  # the table\nname: str = 'houses-mine'  # the registered model")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "import mlflow, mlflow.sklearn, pandas as pd\nfrom sklearn.linear_model import LinearRegression\n"
        "df = pd.read_csv(data)\nm = LinearRegression().fit(df[['area']], df['price'])\n"
        "with mlflow.start_run():  # the step's own run (the runner sets MLFLOW_RUN_ID), as MLflow's docs write it\n"
        "    mlflow.sklearn.log_model(m, name='model', registered_model_name=name, serialization_format='cloudpickle')")
    nbformat.write(new_notebook(cells=[params, body]), project.root / "pipelines" / "mine.ipynb")
    (project.root / "pipelines" / "mine.yaml").write_text(
        "steps:\n  - {name: fit, notebook: mine.ipynb, registry: true}\nparams:\n  data: {file: true}\n")
    (project.root / "houses.csv").write_text("area,price\n" + "".join(f"{a},{a * 3000}\n" for a in range(40, 90)))
    r = project.run("run", "pipelines/mine.yaml", "-p", "data=houses.csv", check=True)
    said = " ".join(r.stdout.split())
    assert "registered houses-mine version 1" in said and "models:/houses-mine@champion" in said, said
    assert "models:/houses@" not in said  # not the model the data file named
    assert "houses-mine:1" in project.run("runs", check=True).stdout
