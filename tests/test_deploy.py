"""Deployment: an edge bundle served with no tracking server, a container build context that lints clean,
Kubernetes manifests that validate, a Prometheus config and dashboard queries promtool accepts, and a Grafana dashboard
that queries only what a running server exports."""
import json, os, shutil, signal, subprocess, sys, tarfile, urllib.error, urllib.request
from pathlib import Path
import pytest, yaml
from conftest import MLOPS_NB, free_port, wait_until_up, clean_env

pytestmark = pytest.mark.slow


def _post(url, body):
    req = urllib.request.Request(f"{url}/invocations", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))


def _server(args, cwd, env, log: Path):
    port = free_port()
    proc = subprocess.Popen([*args, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(log, "w"), start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _offline_env():
    env = clean_env()
    return {**env, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}  # nothing listens there: any use of a tracking server fails


@pytest.fixture(scope="module")
def bundled(trained, tmp_path_factory):
    project, _ = trained
    out = tmp_path_factory.mktemp("bundle") / "assembly-edge"
    r = project.run("bundle", out, check=True)
    assert "serve it with: mlops-nb serve --model" in r.stdout
    return project, out


def test_bundle_holds_model_requirements_settings_and_metadata(bundled):
    project, out = bundled
    meta = json.loads((out / "bundle.json").read_text())
    champion = project.client().get_model_version_by_alias("assembly-defect", "champion")
    assert (meta["name"], meta["version"], meta["run_id"]) == ("assembly-defect", str(champion.version), champion.run_id)
    assert meta["data_version"] == champion.tags["data_version"] and meta["alias"] == "champion"
    assert (out / "model" / "MLmodel").is_file() and (out / "model" / "extra_files" / "profile.json").is_file()
    reqs = (out / "requirements.txt").read_text().splitlines()
    assert all("==" in r for r in reqs) and {r.split("==")[0] for r in reqs} >= {"mlflow", "scikit-learn", "pandas", "fastapi", "uvicorn", "skops"}
    assert "model_name = assembly-defect" in (out / "settings.ini").read_text() and "mlops-nb serve --model" in (out / "README.md").read_text()
    assert (out / "mlops_nb" / "serving" / "server.py").is_file()
    assert set(meta["files"]) >= {"model/MLmodel", "requirements.txt", "mlops_nb/serving/server.py"}
    with tarfile.open(out.with_name(out.name + ".tar.gz")) as tar:
        names = tar.getnames()
    assert f"{out.name}/bundle.json" in names and all(n.startswith(out.name) for n in names)


def test_bundle_serves_offline_with_its_metadata_and_correct_predictions(bundled, tmp_path):
    project, out = bundled
    with tarfile.open(out.with_name(out.name + ".tar.gz")) as tar: tar.extractall(tmp_path, filter="data")  # as on the edge machine
    edge = tmp_path / out.name
    r = subprocess.run([sys.executable, "-m", "mlops_nb.ops.bundle", "verify", "."], cwd=edge, capture_output=True, text=True)
    assert r.returncode == 0 and "intact" in r.stdout, r.stdout + r.stderr
    proc, url = _server([MLOPS_NB, "serve", "--model", str(edge)], edge, _offline_env(), tmp_path / "server.log")
    try:
        wait_until_up(url, 180, proc)
        version = json.load(urllib.request.urlopen(f"{url}/version", timeout=10))
        meta = json.loads((edge / "bundle.json").read_text())
        assert {k: version[k] for k in ("name", "version", "run_id", "data_version")} == {k: meta[k] for k in ("name", "version", "run_id", "data_version")}
        from mlops_nb.ml.data import make_demo_data
        rows = make_demo_data(50, seed=11).drop(columns="defect")
        got = _post(url, {"dataframe_split": json.loads(rows.to_json(orient="split", index=False, date_format="iso"))})["predictions"]
        import mlflow.sklearn  # the registered version itself, found through the project's client (no global MLflow state)
        expected = mlflow.sklearn.load_model(project.client().get_model_version_download_uri("assembly-defect", meta["version"])).predict(rows)
        assert got == [int(v) for v in expected]
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
        from prometheus_client.parser import text_string_to_metric_families
        loaded = {(s.labels["role"], s.labels["name"]): s.value for f in text_string_to_metric_families(metrics) if f.name == "mlops_nb_model_version" for s in f.samples}
        assert loaded == {("champion", "assembly-defect"): float(meta["version"])}
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
    assert (edge / "predictions").is_dir()  # the prediction log stays inside the bundle's folder
    # the image runs the bundle's own copy of the server: it imports from the bundle, not from an installation
    r = subprocess.run([sys.executable, "-c", "import mlops_nb.cli.main, mlops_nb.serving.server as s; print(s.__file__)"], cwd=edge, capture_output=True, text=True)
    assert r.stdout.strip() == str(edge / "mlops_nb" / "serving" / "server.py"), r.stdout + r.stderr


def test_bundle_refuses_bad_input_without_touching_anything(trained, tmp_path):
    project, _ = trained
    r = project.run("bundle", tmp_path / "x", "--model", "models:/assembly-defect/99")
    assert r.returncode == 2 and "no model version models:/assembly-defect/99" in r.stderr and not (tmp_path / "x").exists()
    mine = tmp_path / "mine"; mine.mkdir(); (mine / "notes.txt").write_text("keep")
    r = project.run("bundle", mine)
    assert r.returncode == 2 and "is not one mlops-nb wrote" in r.stderr and [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_docker_build_context_lints_clean(trained, tmp_path):
    project, _ = trained
    out = tmp_path / "image"
    r = project.run("deploy", "docker", out, check=True)
    assert "docker build -t assembly-defect:" in r.stdout
    docker = (out / "Dockerfile").read_text()
    from mlops_nb.ops.deploy import hadolint
    assert hadolint(out / "Dockerfile") == (0, "")
    lines = [l.strip() for l in docker.splitlines()]
    assert lines[[l.startswith("FROM") for l in lines].index(True)] == f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    assert "USER 10001" in lines and any(l.startswith("HEALTHCHECK") for l in lines) and "/ping" in docker
    assert "EXPOSE 8080" in lines and '"--host", "0.0.0.0"' in docker and "pip install --no-cache-dir -r requirements.txt" in docker
    assert "predictions/" in (out / ".dockerignore").read_text() and (out / "bundle.json").is_file() and (out / "requirements.txt").is_file()
    bad = tmp_path / "Dockerfile"; bad.write_text(docker.replace("USER 10001\n", "").replace("-slim", ":latest").replace("FROM python:3.11:latest", "FROM python:latest"))
    code, findings = hadolint(bad)
    assert code != 0 and "DL3007" in findings  # the linter does catch a bad file


def test_k8s_manifests_validate_against_the_schemas(trained, tmp_path):
    project, _ = trained
    out = tmp_path / "k8s"
    r = project.run("deploy", "k8s", out, "--image", "registry.example/assembly-defect:1", check=True)
    assert "kubectl apply -k" in r.stdout
    import kubernetes_validate
    docs = {p.name: yaml.safe_load(p.read_text()) for p in out.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert {d["kind"] for d in docs.values()} == {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"}
    token = docs["secret.yaml"]["stringData"]["token"]
    assert token not in r.stdout and (out / "secret.yaml").stat().st_mode & 0o077 == 0  # never printed; owner only
    for name, d in docs.items(): kubernetes_validate.validate(d, "1.30.0", strict=True)
    dep = docs["deployment.yaml"]; c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example/assembly-defect:1"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/ping"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert c["envFrom"][0]["configMapRef"]["name"] == docs["configmap.yaml"]["metadata"]["name"]
    assert c["env"] == [{"name": "MLOPS_NB_SERVE_TOKEN", "valueFrom": {"secretKeyRef": {"name": docs["secret.yaml"]["metadata"]["name"], "key": "token"}}},
                        {"name": "MLOPS_NB_SERVE_WORKERS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}}}]
    assert c["resources"]["limits"]["cpu"] == "2"  # two serving processes a pod, from its own limit
    assert docs["configmap.yaml"]["data"]["MLOPS_NB_MODEL_NAME"] == "assembly-defect"
    assert docs["hpa.yaml"]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"] == docs["service.yaml"]["metadata"]["name"]
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization" and sorted(kustomization["resources"]) == sorted(docs)  # `kubectl apply -k` applies them all
    broken = {**dep, "spec": {**dep["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError): kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_dashboard_queries_only_metrics_the_running_server_exports(trained, tmp_path):
    project, _ = trained
    r = project.run("deploy", "monitoring", tmp_path / "mon", "--target", "127.0.0.1:8080", check=True)
    dashboard = json.loads((tmp_path / "mon" / "grafana-dashboard.json").read_text())
    prom = yaml.safe_load((tmp_path / "mon" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    env = clean_env()
    env["MLOPS_NB_PREDICTIONS_DIR"] = str(tmp_path / "predictions")  # this server's log and the monitor's figures, apart from other tests'
    proc, url = _server([MLOPS_NB, "serve", "--shadow"], project.root, env, tmp_path / "server.log")
    try:
        wait_until_up(url, 180, proc)
        from mlops_nb.ml.data import make_demo_data
        rows = make_demo_data(300, seed=3, drift=0.8)
        for i in range(0, 40, 4):
            _post(url, {"dataframe_records": json.loads(rows.drop(columns="defect").iloc[i:i + 4].to_json(orient="records", date_format="iso"))})
        bad = urllib.request.Request(f"{url}/invocations", b"{not json", {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError): urllib.request.urlopen(bad, timeout=10)
        rows.to_csv(tmp_path / "window.csv", index=False)
        m = subprocess.run([MLOPS_NB, "monitor", "--data", str(tmp_path / "window.csv"), "--label-column", "defect"], cwd=project.root,
                           env=env, capture_output=True, text=True, timeout=300)
        assert m.returncode in (0, 1), m.stdout + m.stderr  # 1: the darker lighting raised an alert, as it should
        text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
    from prometheus_client.parser import text_string_to_metric_families
    exported = set()
    for fam in text_string_to_metric_families(text):
        exported |= {fam.name, f"{fam.name}_total"} if fam.type == "counter" else {fam.name}
        if fam.type == "histogram": exported |= {f"{fam.name}_bucket", f"{fam.name}_count", f"{fam.name}_sum"}
        exported |= {s.name for s in fam.samples}
    from mlops_nb.ops.deploy import dashboard_metrics
    queried = dashboard_metrics(dashboard)
    assert len(queried) >= 15
    assert queried <= exported, f"the dashboard queries metrics the server does not export: {sorted(queried - exported)}"
    assert 'mlops_nb_drift_psi{feature="brightness"}' in text and "mlops_nb_drift_alert 1.0" in text


PROMTOOL = os.environ.get("PROMTOOL", str(Path(sys.executable).parent / "promtool"))


def promtool(*args) -> subprocess.CompletedProcess:
    "Run promtool (`make promtool` unpacks Debian's into .venv/bin)."
    if not Path(PROMTOOL).exists():
        raise AssertionError(f"{PROMTOOL} not found: run `make promtool` (it unpacks Debian's promtool into .venv/bin, installing nothing system-wide)")
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60)


def test_prometheus_config_and_every_dashboard_query_pass_promtool(tmp_path):
    from mlops_nb.ops.deploy import write_monitoring
    prom_path, dash_path = write_monitoring(tmp_path / "mon", ["127.0.0.1:8080", "10.0.0.7:8080"])
    prom = yaml.safe_load(prom_path.read_text())
    # Debian builds Prometheus without Kubernetes discovery, so its promtool checks the config without the pod job
    static = {**prom, "scrape_configs": [j for j in prom["scrape_configs"] if "kubernetes_sd_configs" not in j]}
    assert len(static["scrape_configs"]) == 1 and static["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8080", "10.0.0.7:8080"]
    (tmp_path / "static.yml").write_text(yaml.safe_dump(static))
    ok = promtool("check", "config", tmp_path / "static.yml")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "bad.yml").write_text(yaml.safe_dump({**static, "global": {"scrape_interval": "fifteen seconds"}}))
    assert promtool("check", "config", tmp_path / "bad.yml").returncode != 0  # promtool really reads the file

    # every panel's PromQL parses: each query becomes a recording rule (Grafana's $__rate_interval as 5m) for `promtool check rules`
    exprs = [t["expr"].replace("$__rate_interval", "5m") for p in json.loads(dash_path.read_text())["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    rules = lambda es: {"groups": [{"name": "dashboard", "rules": [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(es)]}]}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules(exprs)))
    ok = promtool("check", "rules", tmp_path / "rules.yml")
    assert ok.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in ok.stdout, ok.stdout + ok.stderr
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(rules([exprs[0] + ")"])))
    assert promtool("check", "rules", tmp_path / "broken.yml").returncode != 0


@pytest.fixture(scope="module")
def onnx_bundled(trained, tmp_path_factory):
    "An ONNX bundle of the trained project's champion, as `mlops-nb bundle OUT --format onnx` writes it."
    project, _ = trained
    out = tmp_path_factory.mktemp("onnx") / "assembly-onnx"
    r = project.run("bundle", out, "--format", "onnx", check=True)
    said = " ".join(r.stdout.split())
    assert "held-out rows of run" in said and "0 labels differ" in said, said
    return project, out


def _champion(project):
    import mlflow.sklearn
    version = project.client().get_model_version_by_alias("assembly-defect", "champion")
    return mlflow.sklearn.load_model(project.client().get_model_version_download_uri("assembly-defect", version.version))


def test_an_onnx_bundle_predicts_what_the_mlflow_model_predicts_and_the_server_scores_with_it(onnx_bundled, tmp_path):
    import numpy as np
    from mlops_nb.edge.model import EdgeModel
    from mlops_nb.ml.data import make_demo_data
    from mlops_nb.ml.onnx import request_rows
    project, out = onnx_bundled
    meta = json.loads((out / "bundle.json").read_text())
    assert meta["format"] == "onnx" and meta["parity"]["labels_differ"] == 0 and meta["parity"]["max_difference"] <= 1e-5
    assert not (out / "model").exists() and (out / "model.onnx").is_file() and "onnxruntime==" in (out / "requirements.txt").read_text()
    rows = make_demo_data(300, seed=12).drop(columns="defect")
    rows.loc[::7, "vibration"] = None  # missing values take the imputer's path in the graph too
    model = _champion(project)
    edge = EdgeModel(out)
    got, proba = edge.predict(request_rows(rows, edge.columns), proba=True)
    assert got.tolist() == model.predict(rows).tolist()
    assert np.abs(proba - model.predict_proba(rows)).max() <= 1e-5
    # the workbench's own server, given the ONNX bundle, scores with onnxruntime: the same answers
    proc, url = _server([MLOPS_NB, "serve", "--model", str(out), "--workers", "1"], tmp_path, _offline_env(), tmp_path / "server.log")
    try:
        wait_until_up(url, 180, proc)
        split = json.loads(rows.head(40).to_json(orient="split", index=False, date_format="iso"))
        assert _post(url, {"dataframe_split": split})["predictions"] == model.predict(rows.head(40)).tolist()
        req = urllib.request.Request(f"{url}/invocations?explain=true", json.dumps({"dataframe_split": split}).encode(),
                                     {"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=30)
        assert refused.value.code == 422 and "ONNX bundle" in refused.value.read().decode()
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)


EDGE_CLIENT = r'''
import json, subprocess, sys, time, urllib.error, urllib.request
port, bodies = int(sys.argv[1]), json.load(open(sys.argv[2]))
from mlops_nb_edge import EdgeModel
out = {"embedded": EdgeModel(".").score(bodies["json"], proba=True)}
server = subprocess.Popen([sys.executable, "-m", "mlops_nb_edge", "--port", str(port)], stdout=subprocess.DEVNULL)
url = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        urllib.request.urlopen(url + "/ping", timeout=1); break
    except OSError:
        time.sleep(0.1)
def post(body, kind, query=""):
    req = urllib.request.Request(url + "/invocations" + query, body.encode(), {"Content-Type": kind})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return [r.status, json.loads(r.read())]
    except urllib.error.HTTPError as e:
        return [e.code, json.loads(e.read())]
out["json"] = post(json.dumps(bodies["json"]), "application/json", "?proba=true")
out["csv"] = post(bodies["csv"], "text/csv")
out["missing"] = post(json.dumps(bodies["missing"]), "application/json")
out["wrong"] = post(json.dumps(bodies["wrong"]), "application/json")
out["version"] = json.loads(urllib.request.urlopen(url + "/version", timeout=5).read())
try:
    urllib.request.urlopen("http://pypi.org", timeout=3)
    out["network"] = "on"
except OSError:
    out["network"] = "off"
server.terminate(); server.wait(30)
print(json.dumps(out))
'''


def _offline(cmd: list[str]) -> list[str]:
    "`cmd` in a network namespace of its own, loopback only, where this machine allows it (root, or user namespaces)."
    ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0 if shutil.which("unshare") else False
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *map(str, cmd)] if ok else cmd


def test_the_edge_bundle_serves_in_a_fresh_venv_with_only_its_requirements_offline(onnx_bundled, tmp_path):
    from conftest import venv_from, user_env
    from mlops_nb.ml.data import make_demo_data
    from mlops_nb.serving.payload import parse_body
    from mlops_nb.edge.model import EdgeModel
    from mlops_nb.core.errors import BadRequest
    project, out = onnx_bundled
    venv = venv_from(out / "requirements.txt", tmp_path / "edge-venv")
    py = venv / "bin" / "python"
    for module in ("pandas", "sklearn", "mlflow", "mlops_nb", "scipy"):  # none of the Python ML stack is there
        assert subprocess.run([py, "-c", f"import {module}"], cwd=tmp_path, capture_output=True).returncode != 0, module
    edge = tmp_path / "device"
    shutil.copytree(out, edge)
    rows = make_demo_data(30, seed=13).drop(columns="defect")
    split = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))
    records = json.loads(rows.to_json(orient="records", date_format="iso"))
    bodies = {"json": {"dataframe_split": split}, "csv": rows.to_csv(index=False),
              "missing": {"dataframe_records": [{k: v for k, v in records[0].items() if k != "temperature"}]},
              "wrong": {"dataframe_records": [{**records[0], "temperature": "hot"}]}}
    (tmp_path / "bodies.json").write_text(json.dumps(bodies)); (tmp_path / "client.py").write_text(EDGE_CLIENT)
    r = subprocess.run(_offline([py, tmp_path / "client.py", free_port(), tmp_path / "bodies.json"]), cwd=edge,
                       env=user_env(PYTHONPATH=str(edge)), capture_output=True, text=True, timeout=300)  # an app puts the bundle on its path
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.splitlines()[-1])
    expected = _champion(project).predict(rows).tolist()
    assert got["embedded"]["predictions"] == expected and got["json"] == [200, got["embedded"]]
    assert got["csv"] == [200, {"predictions": expected}]
    assert got["version"]["name"] == "assembly-defect" and got["version"]["format"] == "onnx"
    # the same refusals, in the same words, as the workbench's server
    columns = EdgeModel(out).columns
    for case in ("missing", "wrong"):
        with pytest.raises(BadRequest) as said:
            parse_body(json.dumps(bodies[case]).encode(), "application/json", columns)
        assert got[case] == [400, {"error_code": "BAD_REQUEST", "message": str(said.value)}], got[case]
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        assert got["network"] == "off"
