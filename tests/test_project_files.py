"""The files users copy: the GitHub Actions workflow validates against its schema, and the pre-commit hooks clean notebooks."""
import json, os, shutil, subprocess, sys
from pathlib import Path
from conftest import REPO

BIN = Path(sys.executable).parent


def validate_workflow(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True)


def test_ci_workflow_is_a_valid_github_workflow(tmp_path):
    ok = validate_workflow(REPO / ".github" / "workflows" / "ci.yml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    text = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    for step in ("nbdev-export", "git diff --exit-code", "nbdev-clean", "nbdev-test", "pytest", "mlops-nb run pipelines/train.yaml", "upload-artifact"):
        assert step in text, step
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace("runs-on: ubuntu-latest", "runs-on: [ubuntu-latest\n"))  # the validator really reads it
    assert validate_workflow(broken).returncode != 0
    (tmp_path / "ci2.yml").write_text(text.replace("steps:", "stepz:"))
    assert validate_workflow(tmp_path / "ci2.yml").returncode != 0


def test_pre_commit_hooks_clean_notebooks_and_keep_parameters_tags(tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns(".venv*", ".git", "runs", "mlartifacts", "mlflow.db*", "predictions", "demo-loop", "__pycache__"))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    git("init", "-q"); git("add", "-A"); git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    nb_path = repo / "pipelines" / "train.ipynb"
    nb = json.loads(nb_path.read_text())
    nb["cells"][1]["execution_count"] = 7; nb["cells"][1]["metadata"]["scrolled"] = True  # what JupyterLab leaves behind
    nb_path.write_text(json.dumps(nb, indent=1))
    run = subprocess.run([str(BIN / "pre-commit"), "run", "--all-files"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "clean notebooks" in run.stdout  # it changed a file: the commit is stopped
    cleaned = json.loads(nb_path.read_text())
    assert cleaned["cells"][1]["execution_count"] is None and "scrolled" not in cleaned["cells"][1]["metadata"]
    assert any(c.get("metadata", {}).get("tags") == ["parameters"] for c in cleaned["cells"])
    again = subprocess.run([str(BIN / "pre-commit"), "run", "--all-files"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr  # clean and in sync: passes
