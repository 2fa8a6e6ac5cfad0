"""Monitoring as a person or a cron job meets it: `mlops-nb monitor` on files and on the prediction log, and the closed loop."""
import re
import pytest
from mlops_nb.ml.data import make_demo_data

pytestmark = pytest.mark.slow


def test_monitor_a_file_flags_darker_lighting_and_passes_normal_data(trained, tmp_path):
    project, _ = trained
    make_demo_data(2000, seed=11).sample(800, random_state=0).to_csv(tmp_path / "normal.csv", index=False)
    make_demo_data(2000, seed=12, drift=0.8).sample(800, random_state=0).to_csv(tmp_path / "dark.csv", index=False)
    ok = project.run("monitor", "--data", tmp_path / "normal.csv", "--label-column", "defect")  # same hours of the day as training
    assert ok.returncode == 0 and "OK: no drift" in ok.stdout, ok.stdout + ok.stderr
    dark = project.run("monitor", "--data", tmp_path / "dark.csv", "--label-column", "defect")
    assert dark.returncode == 1, dark.stdout + dark.stderr
    assert "ALERT" in dark.stdout and "brightness" in dark.stdout and "accuracy fell from" in dark.stdout
    c = project.client()
    runs = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.step = 'monitor'", order_by=["attributes.start_time DESC"])
    latest = runs[0]
    assert latest.data.tags["mlops_nb.alert"] == "true" and latest.data.metrics["psi_brightness"] >= 0.2
    files = {f.path for f in c.list_artifacts(latest.info.run_id)} | {f.path for f in c.list_artifacts(latest.info.run_id, "plots")}
    assert {"drift.csv", "report.json", "plots/brightness.png", "notebook"} <= files


def test_monitor_says_what_is_wrong_with_its_input(trained, tmp_path):
    project, _ = trained
    empty = project.run("monitor")  # no server ever ran here: no prediction log
    assert empty.returncode == 2 and "has no rows in this window" in empty.stdout + empty.stderr and "Traceback" not in empty.stderr
    make_demo_data(500, seed=3).drop(columns=["pressure", "line"]).head(50).to_csv(tmp_path / "few.csv", index=False)
    few = project.run("monitor", "--data", tmp_path / "few.csv")
    assert few.returncode == 0 and "NOT CHECKED: the window has 50 rows" in few.stdout, few.stdout + few.stderr
    missing = project.run("monitor", "--data", tmp_path / "nope.csv")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_the_loop_detects_drift_retrains_promotes_and_the_server_recovers(tmp_path):
    "The demo, as `make demo-loop` runs it, is the integration test of the whole loop."
    from conftest import make_project
    project = make_project(tmp_path / "p")
    (tmp_path / "mine").mkdir(); (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = project.run("demo-loop", "--folder", tmp_path / "mine")
    assert refused.returncode == 2 and "is not a folder demo-loop made" in refused.stderr and (tmp_path / "mine" / "notes.txt").exists()
    r = project.run("demo-loop", "--n-traffic", "500", "--folder", tmp_path / "loop", check=True, timeout=900)
    out = r.stdout
    assert "monitor on the normal window: OK" in out and "monitor on the drifted window: ALERT" in out
    assert "the server now answers with version 2 (was 1)" in out and "loop closed: version 1 -> 2" in out
    before, after = map(float, re.search(r"accuracy on drifted traffic (\d\.\d+) -> (\d\.\d+)", out).groups())
    assert after > before + 0.05  # the new champion copes with the darker lighting
    from conftest import Project
    loop = Project(tmp_path / "loop")
    c = loop.client()
    train = loop.pipeline_runs()[-1]
    monitor_run = c.get_run(train.data.tags["mlops_nb.triggered_by"])
    assert monitor_run.data.tags["mlops_nb.retrain_run"] == train.info.run_id
    assert c.get_model_version_by_alias("assembly-defect", "champion").version in (2, "2")


def inspector_notes(df, seed, vocabulary):
    "A free-text column: what an inspector wrote about each part, longer and more worried for defective ones."
    import numpy as np
    rng = np.random.default_rng(seed)
    worried = ["crack", "rough", "loose", "dent", "scratch"]
    return [" ".join(rng.choice(vocabulary + (worried if d else []), rng.integers(4, 16))) for d in df.defect]


def test_free_text_is_vectorised_profiled_as_text_and_quiet_on_same_distribution_data(project, tmp_path):
    calm = "part edge bolt paint weld surface finish line shift checked looks fine good clean even tight".split()
    table = make_demo_data(2300, seed=21)
    table["note"] = inspector_notes(table, 1, calm)
    heldout = table.sample(800, random_state=0)  # held-out rows of the same table: the same distribution
    train = table.drop(heldout.index)
    train.to_csv(tmp_path / "parts.csv", index=False)
    heldout.to_csv(tmp_path / "heldout.csv", index=False)
    project.run("run", "pipelines/train.yaml", "-p", f"data={tmp_path / 'parts.csv'}", "-p", "model=linear", check=True)
    schema = project.client().search_runs(
        [project.client().get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.step = 'validate'")[0]
    import json
    kinds = {c["name"]: c["kind"] for c in json.load(open(project.client().download_artifacts(schema.info.run_id, "schema.json")))["columns"]}
    assert kinds["note"] == "text" and kinds["line"] == "categorical"
    # the model is named after its data file (parts); monitor is told which
    quiet = project.run("monitor", "--model", "parts", "--data", tmp_path / "heldout.csv", "--label-column", "defect")
    assert quiet.returncode == 0 and "OK: no drift" in quiet.stdout, quiet.stdout + quiet.stderr
    heldout["note"] = inspector_notes(heldout, 3, "invoice refund courier parcel address late payment order".split())
    heldout.to_csv(tmp_path / "other.csv", index=False)
    moved = project.run("monitor", "--model", "parts", "--data", tmp_path / "other.csv", "--label-column", "defect")
    assert moved.returncode == 1 and "note" in moved.stdout, moved.stdout
