"""A step notebook run the way JupyterLab runs it: defaults only, no runner, in a fresh project."""
import json, os, subprocess, sys
import pytest
from conftest import clean_env

pytestmark = pytest.mark.slow


def test_step_notebook_runs_top_to_bottom_with_its_defaults(project):
    nb = project.root / "pipelines" / "evaluate.ipynb"
    out = project.root / "executed.ipynb"
    env = clean_env()
    r = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(nb.parent), str(nb), str(out)],
                       cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cells = json.loads(out.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    home = project.root / "runs" / "interactive"
    for step in ("ingest", "validate", "train", "evaluate"):  # evaluate ran its missing upstream steps first
        assert (home / step / "outputs.json").is_file(), step
    assert json.loads((home / "evaluate" / "outputs.json").read_text())["metrics"]["roc_auc"] > 0.8
    runs = project.client().search_runs([project.client().get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.mode = 'interactive'")
    assert sorted(r.data.tags["mlops_nb.step"] for r in runs) == ["evaluate", "ingest", "train", "validate"]
    assert all(r.info.status == "FINISHED" for r in runs)
