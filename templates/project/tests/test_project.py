"""{{name}}: the train pipeline runs end to end on a small table, in a throw-away store."""
import os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MLOPS_NB = str(Path(sys.executable).parent / "mlops-nb")


def test_train_pipeline_registers_a_champion(tmp_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "MLOPS_NB_ARTIFACT_ROOT": str(tmp_path / "mlartifacts"),
        "MLOPS_NB_RUNS_DIR": str(tmp_path / "runs"),
    }
    r = subprocess.run(
        [MLOPS_NB, "run", str(ROOT / "pipelines" / "train.yaml"), "-p", "n_rows=800"],
        env=env, capture_output=True, text=True, cwd=tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"], registry_uri=env["MLFLOW_TRACKING_URI"])
    assert str(client.get_model_version_by_alias("{{name}}", "champion").version) == "1"


def test_blend_classifier_learns():
    import numpy as np
    from {{package}}.models import BlendClassifier

    X = np.random.default_rng(1).normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    assert BlendClassifier().fit(X, y).score(X, y) > 0.9
