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


def test_release_workflow_builds_smoke_tests_then_publishes_by_trusted_publishing(tmp_path):
    path = REPO / ".github" / "workflows" / "release.yml"
    ok = validate_workflow(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    import yaml
    wf = yaml.safe_load(path.read_text())
    assert wf[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as True
    jobs = wf["jobs"]
    assert jobs["smoke"]["needs"] == "build" and set(jobs["publish"]["needs"]) == {"build", "smoke"}
    assert jobs["publish"]["permissions"]["id-token"] == "write" and jobs["publish"]["environment"] == "pypi"
    steps = lambda job: " ".join(str(s.get("run", "")) + str(s.get("uses", "")) for s in jobs[job]["steps"])
    assert "python -m build" in steps("build") and "twine check" in steps("build") and "fetch-depth" in path.read_text()
    assert "make run" in steps("smoke") and "pypa/gh-action-pypi-publish" in steps("publish")
    assert "password" not in path.read_text() and "PYPI_TOKEN" not in path.read_text()  # no token: OIDC
    (tmp_path / "r.yml").write_text(path.read_text().replace("needs: build", "needz: build"))
    assert validate_workflow(tmp_path / "r.yml").returncode != 0
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## 0.1.0 " in changelog and changelog.index("## Unreleased") < changelog.index("## 0.1.0 ")


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
