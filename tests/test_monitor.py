"""Monitoring as a person or a cron job meets it: `mlops-nb monitor` on files and on the prediction log, and the closed loop."""
import re
from pathlib import Path
import pytest
from conftest import download
from mlops_nb.ml.data import make_demo_data

pytestmark = pytest.mark.slow


def test_monitor_a_file_flags_darker_lighting_and_passes_normal_data(trained, tmp_path):
    project, _ = trained
    make_demo_data(2000, seed=11).sample(800, random_state=0).to_csv(tmp_path / "normal.csv", index=False)
    make_demo_data(2000, seed=12, drift=0.8).sample(800, random_state=0).to_csv(tmp_path / "dark.csv", index=False)
    ok = project.run("monitor", "--data", tmp_path / "normal.csv", "--label-column", "defect")  # same hours of the day as training
    assert ok.returncode == 0 and "OK: no drift" in ok.stdout, ok.stdout + ok.stderr
    dark = project.run("monitor", "--data", tmp_path / "dark.csv", "--label-column", "defect", "-p", "sensitive=line")
    assert dark.returncode == 1, dark.stdout + dark.stderr
    assert "ALERT" in dark.stdout and "brightness" in dark.stdout and "accuracy fell from" in dark.stdout
    c = project.client()
    runs = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.step = 'monitor'", order_by=["attributes.start_time DESC"])
    latest = runs[0]
    assert latest.data.tags["mlops_nb.alert"] == "true" and latest.data.metrics["psi_brightness"] >= 0.2
    assert "fairness_gap_line" in latest.data.metrics  # the per-group figures on the labelled window, as at training
    files = {f.path for f in c.list_artifacts(latest.info.run_id)} | {f.path for f in c.list_artifacts(latest.info.run_id, "plots")}
    assert {"drift.csv", "report.json", "plots/brightness.png", "notebook"} <= files
    # a window of consecutive traffic: one shift of parts (the README's hourly cron job meets nothing else)
    shift = make_demo_data(3000, seed=13).sort_values("timestamp").iloc[900:1700]
    shift.to_csv(tmp_path / "shift.csv", index=False)
    quiet = project.run("monitor", "--data", tmp_path / "shift.csv", "--label-column", "defect")
    assert quiet.returncode == 0 and "OK: no drift" in quiet.stdout, quiet.stdout + quiet.stderr
    drift = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.step = 'monitor'",
                          order_by=["attributes.start_time DESC"])[0]
    table = Path(c.download_artifacts(drift.info.run_id, "drift.csv", str(tmp_path))).read_text()
    assert "shift" in table and "the reference rows of the same hours" in table  # said in the report


def test_ten_clean_windows_raise_no_alert_and_planted_shifts_are_caught():
    """Held-out rows, fresh rows from the same generator and windows of consecutive traffic, with a short text column,
    a date, a many-valued code and labels: quiet (bench/monitor_alarms.py draws 50 of each kind and reports the rates)."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import monitor_alarms as bench
    from mlops_nb.ml.drift import Thresholds
    p, p_test = bench.train(bench.parts(4000, 42), "defect", "binary")
    h, h_test = bench.train(bench.houses(4000, 42), "price", "regression")
    clean = [("held-out", p, p_test.sample(500, random_state=1)), ("held-out", h, h_test.sample(500, random_state=1))]
    clean += [("fresh", p, bench.parts(3000, 50 + i).sample(500, random_state=i)) for i in range(2)]
    clean += [("fresh", h, bench.houses(3000, 60 + i).sample(500, random_state=i)) for i in range(2)]
    clean += [("one shift", p, bench.consecutive(bench.parts(6000, 70 + i), "timestamp", 800, 2 + i)) for i in range(2)]
    clean += [("one afternoon", h, bench.consecutive(bench.houses(3000, 80 + i), "listed", 300, i)) for i in range(2)]
    verdicts = [(kind, *bench.alerts(t, w, Thresholds())) for kind, t, w in clean]
    assert not [v for v in verdicts if v[1]], [v for v in verdicts if v[1]]
    planted = bench.parts(4000, 90, drift=0.5).sample(500, random_state=0)
    alert, verdict = bench.alerts(p, planted, Thresholds())
    assert alert and "brightness" in verdict, verdict
    alert, verdict = bench.alerts(h, bench.houses(3000, 91, price_factor=1.2).sample(500, random_state=0), Thresholds())
    assert alert and "rmse rose from" in verdict, verdict  # an error that grew says it rose


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
    import numpy as np
    said = [" ".join(np.random.default_rng(i).choice(calm, 7)) for i in range(340)]
    table["remark"] = np.random.default_rng(5).choice(said, len(table))  # 340 sentences, each said about 7 times
    heldout = table.sample(800, random_state=0)  # held-out rows of the same table: the same distribution
    train = table.drop(heldout.index)
    train.to_csv(tmp_path / "parts.csv", index=False)
    heldout.to_csv(tmp_path / "heldout.csv", index=False)
    trained = project.run("run", "pipelines/train.yaml", "-p", f"data={tmp_path / 'parts.csv'}", "-p", "model=linear",
                          check=True)
    assert "validate: remark: free text: TF-IDF of its words" in " ".join(trained.stdout.split()), trained.stdout
    schema = project.client().search_runs(
        [project.client().get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.step = 'validate'")[0]
    import json
    kinds = {c["name"]: c["kind"] for c in json.load(open(download(project.client(), schema.info.run_id, "schema.json")))["columns"]}
    assert kinds["note"] == "text" and kinds["line"] == "categorical" and kinds["remark"] == "text"
    columns = open(download(project.client(), schema.info.run_id, "columns.md")).read()  # every column's treatment
    assert re.search(r"\| remark +\| text +\| free text", columns) and re.search(r"\| line +\| categorical +\| one-hot", columns)
    # the model is named after its data file (parts); monitor is told which
    quiet = project.run("monitor", "--model", "parts", "--data", tmp_path / "heldout.csv", "--label-column", "defect")
    assert quiet.returncode == 0 and "OK: no drift" in quiet.stdout, quiet.stdout + quiet.stderr
    heldout["note"] = inspector_notes(heldout, 3, "invoice refund courier parcel address late payment order".split())
    heldout.to_csv(tmp_path / "other.csv", index=False)
    moved = project.run("monitor", "--model", "parts", "--data", tmp_path / "other.csv", "--label-column", "defect")
    assert moved.returncode == 1 and "note" in moved.stdout, moved.stdout
