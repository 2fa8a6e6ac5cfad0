"""The promotion gate as a team meets it: a better version is promoted, a worse one refused, and a rollback restores."""
import json
import pytest
from conftest import make_project

pytestmark = pytest.mark.slow
NAME = "assembly-defect"
WEAK = ["-p", "model=rf", "-p", "n_estimators=2", "-p", "max_depth=1"]


def aliases(project) -> dict:
    return {a: str(v) for a, v in project.client().get_registered_model(NAME).aliases.items()}


def test_gate_promotes_a_better_version_refuses_a_worse_one_and_rollback_restores(tmp_path):
    project = make_project(tmp_path / "gate")
    run = lambda *a: project.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", *a, check=True)
    first = run(*WEAK)
    assert "gate passed: champion is version 1" in first.stdout
    second = run()  # the default boosted model is far better than a 2-stump forest
    assert "gate passed: champion is version 2" in second.stdout
    assert aliases(project) == {"champion": "2", "previous": "1", "challenger": "2"}
    third = run(*WEAK, "-p", "seed=7", "-p", "min_improvement=0.01")
    assert "gate refused: champion is version 2" in third.stdout and "FAILED: roc_auc" in third.stdout
    assert aliases(project) == {"champion": "2", "previous": "1", "challenger": "3"}
    c = project.client()
    refused = c.get_model_version(NAME, "3")
    assert refused.tags["mlops_nb.gate"] == "refused" and "FAILED" in refused.tags["mlops_nb.gate.reasons"]
    assert "refused" in refused.description and "must not serve as champion" in refused.description
    gate_run = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id],
                             f"tags.mlflow.parentRunId = '{project.pipeline_runs()[-1].info.run_id}' and tags.mlops_nb.step = 'gate'")[0]
    decision = json.loads(open(c.download_artifacts(gate_run.info.run_id, "gate.json")).read())
    assert decision["passed"] is False and decision["champion"] == "2" and decision["rules"]["min_improvement"] == 0.01

    back = project.run("rollback", "--reason", "version 2 misbehaves on line B", check=True)
    assert "champion is back to version 1" in back.stdout
    assert aliases(project)["champion"] == "1" and "previous" not in aliases(project)
    shown = project.run("registry", check=True).stdout
    for text in ("promote", "refuse", "rollback", "version 2 misbehaves on line B"):
        assert text in shown, text
    again = project.run("promote", "2", "--reason", "fixed upstream data")
    assert again.returncode == 0 and aliases(project) == {"champion": "2", "previous": "1", "challenger": "3"}
    missing = project.run("promote", "9", "--reason", "typo")
    assert missing.returncode == 2 and "has no version 9; its versions are: 1, 2, 3" in missing.stderr and "Traceback" not in missing.stderr
