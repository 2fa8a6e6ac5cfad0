"""The scoring server as callers meet it: a real `mlops-nb serve` on 127.0.0.1 over a registry built by the train pipeline.

Version 1 comes from the pipeline (a boosted model that copes with missing values). Version 2 is the
champion: a plain logistic regression that raises on a missing value, so a request with one makes the
champion fail and the `previous` version (1) answer. Version 1 is also the challenger, scored in shadow.
"""
import json, os, signal, subprocess, threading, time
from contextlib import contextmanager
import httpx
import numpy as np
import pandas as pd
import pytest
from conftest import MLOPS_NB, clean_env, free_port, make_project, wait_for_url, wait_until_up

NAME = "assembly-defect"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    "A project with version 1 (pipeline) and version 2 (fails on missing values): champion 2, previous 1, challenger 1."
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from mlops_nb.track.registry import register_model
    from mlops_nb.track.client import start_run
    from mlops_nb.ml.validate import Schema
    project = make_project(tmp_path_factory.mktemp("serving"))
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", check=True)
    c = project.client()
    run_dir = project.root / "runs" / project.pipeline_runs()[-1].info.run_id
    test = pd.read_parquet(run_dir / "ingest" / "test.parquet")
    X, y = test.drop(columns="defect"), test.defect
    numeric = ["temperature", "vibration", "pressure", "brightness", "edge_score"]
    strict = Pipeline([("pick", ColumnTransformer([("num", "passthrough", numeric)])), ("lr", LogisticRegression(max_iter=500))])
    complete = X.dropna()
    strict.fit(complete, y.loc[complete.index])
    run = start_run(c, c.get_experiment_by_name("mlops-nb").experiment_id, "strict-model")
    register_model(c, run, NAME, strict, complete.head(5), Schema.read(run_dir / "validate" / "schema.json"))
    c.set_registered_model_alias(NAME, "champion", "2")
    c.set_registered_model_alias(NAME, "previous", "1")
    c.set_registered_model_alias(NAME, "challenger", "1")
    return project, X


def eventually(what, timeout: float = 120):
    "Poll `what()` until it is true (the server writes its logs in the background); return its last value."
    deadline = time.monotonic() + timeout
    while not (value := what()) and time.monotonic() < deadline: time.sleep(0.1)
    return value


@contextmanager
def server(project, *args):
    "`mlops-nb serve ARGS` on a free port of 127.0.0.1, until the block ends."
    port = free_port()
    env = clean_env()
    proc = subprocess.Popen([MLOPS_NB, "serve", "--port", str(port), *args], cwd=project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, 180, proc)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
        assert "Traceback" not in out, out


@pytest.fixture(scope="module")
def url(registry):
    with server(registry[0], "--shadow", "--reload-seconds", "0.5", "--max-body-mb", "0.05", "--workers", "2") as u:
        yield u


def records(df: pd.DataFrame) -> list[dict]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def mlflow_model(project, uri: str):
    """The model at `uri` as MLflow's own loader gives it, from the project's store (set for this call only: MLflow's
    setter also exports MLFLOW_TRACKING_URI, which every process this test run starts later would inherit)."""
    import mlflow
    from mlops_nb.track.client import mlflow_globals
    with mlflow_globals(project.client()):
        return mlflow.pyfunc.load_model(uri)


def post(url, payload=None, **kw) -> httpx.Response:
    return httpx.post(f"{url}/invocations", json=payload, timeout=30, **kw) if payload is not None else httpx.post(f"{url}/invocations", timeout=30, **kw)


def test_every_payload_format_gives_mlflows_predictions(registry, url):
    project, X = registry
    rows = X.dropna().head(6)
    expected = mlflow_model(project, f"models:/{NAME}/2").predict(rows).tolist()
    split = json.loads(rows.to_json(orient="split", date_format="iso", index=False))
    bodies = [{"dataframe_records": records(rows)}, {"dataframe_split": split}, {"instances": records(rows)}, {"inputs": records(rows)},
              {"inputs": {c: [r[c] for r in records(rows)] for c in rows.columns}}]
    for body in bodies:
        r = post(url, body)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected} and r.headers["x-model-version"] == "2"
    r = post(url, content=rows.to_csv(index=False), headers={"content-type": "text/csv"})
    assert r.json()["predictions"] == expected
    p = httpx.post(f"{url}/invocations?proba=true", json={"dataframe_records": records(rows)}, timeout=30).json()
    assert np.allclose(np.sum(p["probabilities"], axis=1), 1) and p["classes"] == [0, 1]


@pytest.mark.parametrize("kwargs, status, message", [
    ({"json": {"dataframe_records": [{"line": "A"}]}}, 400, "missing required column(s): timestamp, shift, temperature"),
    ({"json": {"dataframe_records": [{"temperature": "hot"}]}}, 400, "missing required column"),
    ({"content": b'{"dataframe_records": [', "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
    ({"json": {"rows": []}}, 400, "exactly one of the keys"),
    ({"content": b"<xml/>", "headers": {"content-type": "application/xml"}}, 415, "not supported"),
    ({"content": b"x" * 60_000, "headers": {"content-type": "application/json"}}, 413, "limit"),
    ({"content": b"line,temperature\nA,1\n", "headers": {"content-type": "text/csv"}}, 400, "missing required column(s): timestamp"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_server_keeps_serving(url, registry, kwargs, status, message):
    r = post(url, **kwargs)
    assert r.status_code == status and message in r.json()["message"], r.text
    assert r.json()["error_code"]
    ok = post(url, {"dataframe_records": records(registry[1].dropna().head(1))})
    assert ok.status_code == 200


def test_wrong_type_names_the_column_and_row(url, registry):
    row = records(registry[1].dropna().head(2))
    row[1]["temperature"] = "hot"
    r = post(url, {"dataframe_records": row})
    assert r.status_code == 400 and "column 'temperature' expects a number (double); row 1 has \"hot\"" in r.json()["message"]


def test_a_failing_champion_is_answered_by_the_previous_version(url, registry):
    project, X = registry
    row = X[X.vibration.isna()].head(1)
    r = post(url, {"dataframe_records": records(row)})
    assert r.status_code == 200 and r.headers["x-model-version"] == "1" and "previous" in r.headers["x-model-fallback"]
    assert r.json()["predictions"] == mlflow_model(project, f"models:/{NAME}/1").predict(row).tolist()
    assert "mlops_nb_fallbacks_total" in httpx.get(f"{url}/metrics").text


def test_shadow_and_prediction_log_record_each_row(url, registry):
    project, X = registry
    rows = X.dropna().head(3)
    r = post(url, {"dataframe_records": records(rows)}, headers={"x-request-id": "shadow-check-1"})
    assert set(r.json()) == {"predictions"}  # the shadow's opinion is never returned
    deadline, found = time.monotonic() + 120, []  # the log is written in the background: wait for the rows
    from mlops_nb.serving.predlog import read_log
    while time.monotonic() < deadline and len(found) < 3:
        time.sleep(0.2)
        found = [x for x in read_log(project.root / "predictions") if x["request_id"] == "shadow-check-1"]
    assert [x["row"] for x in found] == [0, 1, 2]
    assert all(x["version"] == "2" and x["shadow_version"] == "1" and x["shadow_prediction"] in (0, 1) for x in found)
    assert found[0]["inputs"]["line"] == rows.line.iloc[0]
    metrics = httpx.get(f"{url}/metrics").text
    shadow_rows = next(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith("mlops_nb_shadow_rows_total"))
    assert shadow_rows >= 3 and "mlops_nb_shadow_disagreements_total" in metrics


def test_health_version_and_metrics(url):
    h = httpx.get(f"{url}/health").json()
    assert h["status"] == "ready" and h["models"]["champion"]["version"] == "2" and h["models"]["previous"]["version"] == "1"
    v = httpx.get(f"{url}/version").json()
    assert (v["name"], v["version"], v["alias"], v["challenger"]) == (NAME, "2", "champion", "1") and v["run_id"]
    m = httpx.get(f"{url}/metrics").text
    for name in ("mlops_nb_requests_total", "mlops_nb_request_seconds_bucket", "mlops_nb_errors_total", "mlops_nb_model_version", "mlops_nb_batch_rows"):
        assert name in m, name


def test_hot_reload_under_load_fails_no_request(url, registry):
    project, X = registry
    body = {"dataframe_records": records(X.dropna().head(1))}
    seen, failures, stop = [], [], threading.Event()
    def hammer():
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                r = http.post(f"{url}/invocations", json=body)
                (seen if r.status_code == 200 else failures).append(r.headers.get("x-model-version") if r.status_code == 200 else r.text)
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads: t.start()
    try:
        assert eventually(lambda: len(seen) >= 20 or failures), "the server answered no traffic"  # the load is on
        project.client().set_registered_model_alias(NAME, "champion", "1")
        deadline = time.monotonic() + 180  # generous: the reload loads a model while eight clients keep the server busy
        while (served := serving(url)) != {"1"} and time.monotonic() < deadline: time.sleep(0.2)
        assert served == {"1"}, f"180 s after the champion alias moved to version 1 the server's processes serve {served}"
        switched = len(seen)
        assert eventually(lambda: seen[switched:].count("1") >= 20 or failures), "no answers from version 1 after the switch"
    finally:
        stop.set()
        for t in threads: t.join()
    assert not failures, failures[:3]
    assert seen[0] == "2" and seen[-1] == "1" and len(seen) > 50
    # once every process serves version 1, at most the requests already in flight were answered by version 2
    assert seen[switched:].count("2") <= len(threads), seen[switched:]


def serving(url) -> set[str]:
    "The champion versions the server's processes serve (one process: its /version)."
    h = httpx.get(f"{url}/health", timeout=30).json()
    if "processes" in h:
        return {p["champion"] for p in h["processes"].values()}
    return {httpx.get(f"{url}/version", timeout=30).json()["version"]}


def test_champion_that_cannot_load_is_replaced_by_previous(registry):
    import shutil
    from urllib.parse import urlparse
    from mlops_nb.track.registry import register_model
    from mlops_nb.track.client import start_run
    from mlops_nb.ml.validate import infer_schema
    from sklearn.dummy import DummyClassifier
    project, X = registry
    c = project.client()
    run = start_run(c, c.get_experiment_by_name("mlops-nb").experiment_id, "broken-model")
    mv = register_model(c, run, NAME, DummyClassifier().fit(X, np.arange(len(X)) % 2), X.head(3), infer_schema(X.assign(t=0), "t", "binary"))
    model_id = mv.model_id or mv.source.rsplit("/", 1)[-1]  # source is models:/<model id>
    shutil.rmtree(urlparse(c.get_logged_model(model_id).artifact_location).path)  # its files are gone
    c.set_registered_model_alias(NAME, "champion", str(mv.version))
    c.set_registered_model_alias(NAME, "previous", "1")
    with server(project) as url:
        assert httpx.get(f"{url}/health").json()["status"] == "degraded"
        assert httpx.get(f"{url}/version").json()["serving"] == "previous (fallback)"
        r = post(url, {"dataframe_records": records(X.head(2))})
        assert r.status_code == 200 and r.headers["x-model-version"] == "1" and "not loaded" in r.headers["x-model-fallback"]


def test_batch_scoring_matches_the_model(registry, tmp_path):
    project, X = registry
    X.to_csv(tmp_path / "in.csv", index=False)
    r = project.run("score", "--model", f"models:/{NAME}/1", "--chunk-rows", "100", tmp_path / "in.csv", tmp_path / "out.parquet", check=True)
    assert f"scored {len(X)} rows" in r.stdout
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out.prediction.tolist() == mlflow_model(project, f"models:/{NAME}/1").predict(X).tolist()
    assert {"proba_0", "proba_1"} <= set(out.columns)
    r = project.run("score", "--model", f"models:/{NAME}/1", "--explain", tmp_path / "in.csv", tmp_path / "why.csv", check=True)
    why = pd.read_csv(tmp_path / "why.csv")
    assert_explanations_add_up(why, why[[f"contribution_{c}" for c in X.columns]].sum(axis=1) + why.explained_base)
    bad = project.run("score", tmp_path / "missing.csv", tmp_path / "o.csv")
    assert bad.returncode == 2 and "not found" in bad.stderr


def assert_explanations_add_up(scored: pd.DataFrame, explained):
    "Each row's base value plus its contributions is the model's own output: the log-odds of the class it predicted."
    p = scored[["proba_0", "proba_1"]].to_numpy()[np.arange(len(scored)), scored.prediction.astype(int)]
    assert np.allclose(1 / (1 + np.exp(-np.asarray(explained, dtype=float))), p, atol=2e-6)  # the server rounds to 1e-6


def test_explanations_add_up_to_the_answer_and_a_model_without_background_says_why(registry, tmp_path):
    "`?explain=true` answers each row's top contributions, from the model that scored it; they sum to its output."
    project, X = registry
    rows = X.head(4)
    with server(project, "--model", f"models:/{NAME}/1", "--no-log") as one:
        r = httpx.post(f"{one}/invocations?explain=true&proba=true&top=50", json={"dataframe_records": records(rows)}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        whys = body["explanations"]
        assert [w["class"] for w in whys] == body["predictions"] and {t["column"] for t in whys[0]["top"]} <= set(X.columns)
        assert whys[0]["output"] == "log-odds of the predicted class" and whys[0]["top"][0]["value"] is not None
        scored = pd.DataFrame({"prediction": body["predictions"], "proba_0": [p[0] for p in body["probabilities"]],
                               "proba_1": [p[1] for p in body["probabilities"]]})
        assert_explanations_add_up(scored, [w["base"] + sum(t["contribution"] for t in w["top"]) for w in whys])
        short = httpx.post(f"{one}/invocations?explain=true", json={"dataframe_records": records(rows)}, timeout=60).json()
        assert [len(w["top"]) for w in short["explanations"]] == [5] * 4
        bad = httpx.post(f"{one}/invocations?explain=true&top=x", json={"dataframe_records": records(rows)}, timeout=60)
        assert bad.status_code == 400 and "top='x'" in bad.json()["message"]
    X.dropna().head(3).to_csv(tmp_path / "rows.csv", index=False)  # version 2: a linear model registered without them
    old = project.run("score", "--model", f"models:/{NAME}/2", "--explain", tmp_path / "rows.csv", tmp_path / "out.csv")
    assert old.returncode == 2 and "carries no background rows" in old.stderr, old.stderr


@pytest.mark.slow
def test_mlflow_models_serve_serves_what_the_workbench_registered(registry):
    "Interoperability: MLflow's own server loads the registered version and agrees with ours."
    import sys
    project, X = registry
    rows = records(X.head(5))
    port = free_port()
    env = clean_env()
    env |= {"MLFLOW_TRACKING_URI": project.tracking, "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"}
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "mlflow"), "models", "serve", "-m", f"models:/{NAME}/1",
                             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=project.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_url(f"http://127.0.0.1:{port}/ping", 180, proc)
        theirs = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": rows}, timeout=30).json()
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
    with server(project, "--model", f"models:/{NAME}/1", "--no-log") as url:
        ours = post(url, {"dataframe_records": rows}).json()
    assert theirs == ours and len(ours["predictions"]) == 5


def _metric(text: str, name: str, **labels) -> float:
    "The value of one Prometheus sample (0 when absent)."
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name) and (not labels or "{" in line and sorted(line[line.index("{") + 1:line.index("}")].split(",")) == want.split(",")):
            return float(line.split()[-1])
    return 0.0


def test_ab_split_is_sticky_per_caller_and_measured_per_variant(registry):
    project, X = registry
    c = project.client()
    c.set_registered_model_alias(NAME, "champion", "1"); c.set_registered_model_alias(NAME, "challenger", "2")
    body = {"dataframe_records": records(X.dropna().head(1))}
    with server(project, "--ab-fraction", "0.5") as url:
        variants = {}
        for caller in (f"caller-{i}" for i in range(40)):
            got = {(r.headers["x-model-variant"], r.headers["x-model-version"])
                   for r in (post(url, body, headers={"x-caller-id": caller}) for _ in range(3))}
            assert len(got) == 1, got  # sticky
            variants[caller] = got.pop()
        assert set(variants.values()) == {("champion", "1"), ("challenger", "2")}
        metrics = httpx.get(f"{url}/metrics").text
        n = sum(v[0] == "challenger" for v in variants.values())
        assert _metric(metrics, "mlops_nb_requests_total", variant="challenger", status="ok") == 3 * n
        assert _metric(metrics, "mlops_nb_requests_total", variant="champion", status="ok") == 3 * (40 - n)


def test_concurrent_requests_are_micro_batched_and_a_crash_keeps_the_log_readable(registry):
    from concurrent.futures import ThreadPoolExecutor
    from mlops_nb.serving.predlog import read_log
    project, X = registry
    log_dir = project.root / "predictions"
    before = len(read_log(log_dir))
    rows = records(X.dropna().head(64))
    port = free_port()
    env = clean_env()
    proc = subprocess.Popen([MLOPS_NB, "serve", "--port", str(port), "--max-wait-ms", "5"], cwd=project.root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, 180, proc)
        with httpx.Client(timeout=30) as http, ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda r: http.post(f"{url}/invocations", json={"dataframe_records": [r]}), rows * 4))
        assert all(a.status_code == 200 for a in answers)
        metrics = httpx.get(f"{url}/metrics").text
        calls, scored = _metric(metrics, "mlops_nb_batch_rows_count"), _metric(metrics, "mlops_nb_batch_rows_sum")
        assert scored == len(answers) and calls < len(answers)  # several requests shared a predict call
        assert eventually(lambda: len(read_log(log_dir)) - before >= len(answers) - 64)  # the writer has flushed all but a batch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no shutdown, no final flush
        proc.wait(30)
    after = read_log(log_dir)
    assert len(after) - before >= len(answers) - 64  # at most the last unflushed batch is lost
    for seg in log_dir.glob("predictions-*.jsonl"):
        lines = seg.read_bytes().split(b"\n")
        for line in lines[:-2]: json.loads(line)  # every complete line of every segment still parses



def test_two_processes_count_every_request_once_in_metrics_log_and_feedback(registry):
    from concurrent.futures import ThreadPoolExecutor
    from mlops_nb.serving.predlog import read_log
    project, X = registry
    log_dir = project.root / "predictions"
    rows = records(X.dropna().head(10))
    with server(project, "--workers", "2", "--no-fallback") as url, httpx.Client(timeout=30) as http:
        assert len(httpx.get(f"{url}/health").json()["processes"]) == 2
        before = _metric(httpx.get(f"{url}/metrics").text, "mlops_nb_requests_total", variant="champion", status="ok")
        send = lambda i: http.post(f"{url}/invocations", json={"dataframe_records": [rows[i % 10]]},
                                   headers={"x-request-id": f"two-{i}"})
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(300)))
        assert [a.status_code for a in answers] == [200] * 300
        metrics = httpx.get(f"{url}/metrics").text  # whichever process answers, the sum of both
        assert _metric(metrics, "mlops_nb_requests_total", variant="champion", status="ok") - before == 300
        assert _metric(metrics, "mlops_nb_rows_total", variant="champion") >= 300
        # a label sent at once, to either process, for a request the other one scored: accepted, once
        labels = [{"request_id": f"two-{i}", "label": i % 2} for i in range(20)]
        first = http.post(f"{url}/feedback", json={"labels": labels}).json()
        assert first == {"accepted": 20, "unknown": [], "already_labelled": []}, first
        again = [http.post(f"{url}/feedback", json={"labels": labels[:1]}).json() for _ in range(4)]
        assert all(a == {"accepted": 0, "unknown": [], "already_labelled": ["two-0:0"]} for a in again), again
    ids = [r["request_id"] for r in read_log(log_dir) if str(r["request_id"]).startswith("two-")]
    assert sorted(ids) == sorted(f"two-{i}" for i in range(300))  # each request once: none lost, none twice

def test_feedback_is_stored_and_unknown_or_repeated_ids_are_reported(url, registry):
    from mlops_nb.serving.predlog import FEEDBACK, feedback_folder, read_log
    project, X = registry
    rows = X.dropna().head(2)
    post(url, {"dataframe_records": records(rows)}, headers={"x-request-id": "fb-1"})
    r = httpx.post(f"{url}/feedback", json={"labels": [{"request_id": "fb-1", "row": 0, "label": 1}, {"request_id": "fb-1", "row": 1, "label": 0},
                                                       {"request_id": "never-scored", "label": 1}]}, timeout=30)
    assert r.status_code == 200 and r.json() == {"accepted": 2, "unknown": ["never-scored:0"], "already_labelled": []}
    again = httpx.post(f"{url}/feedback", json={"labels": [{"request_id": "fb-1", "row": 0, "label": 0}]}, timeout=30).json()
    assert again == {"accepted": 0, "unknown": [], "already_labelled": ["fb-1:0"]}
    bad = httpx.post(f"{url}/feedback", json={"labels": [{"request_id": "fb-1"}]}, timeout=30)
    assert bad.status_code == 400 and "label: Field required" in bad.json()["message"]
    stored_now = lambda: [f for f in read_log(feedback_folder(project.root / "predictions"), prefix=FEEDBACK) if f["request_id"] == "fb-1"]
    stored = eventually(lambda: len(stored_now()) >= 2 and stored_now())
    assert sorted((f["row"], f["label"]) for f in stored) == [(0, 1), (1, 0)]


def test_feedback_from_a_file(url, registry, tmp_path):
    project, X = registry
    post(url, {"dataframe_records": records(X.dropna().head(1))}, headers={"x-request-id": "fb-file"})
    from mlops_nb.serving.predlog import read_log
    assert eventually(lambda: any(r["request_id"] == "fb-file" for r in read_log(project.root / "predictions")))
    pd.DataFrame({"request_id": ["fb-file"], "label": [1]}).to_csv(tmp_path / "labels.csv", index=False)
    ok = project.run("feedback", tmp_path / "labels.csv")
    assert ok.returncode == 0 and "1 labels recorded; 0 for unknown request ids; 0 already labelled" in ok.stdout, ok.stdout + ok.stderr
    pd.DataFrame({"request_id": ["fb-file", "ghost"], "label": [0, 1]}).to_csv(tmp_path / "again.csv", index=False)
    bad = project.run("feedback", tmp_path / "again.csv")
    assert bad.returncode == 2 and "1 for unknown request ids: ghost:0" in bad.stdout and "1 already labelled: fb-file:0" in bad.stdout


def test_a_token_guards_feedback_and_scoring_and_is_never_shown(registry, tmp_path):
    "With --token-file: 401 without or with a wrong token (counted), 200 with it; `ps`, the log and the CLI never show it."
    project, X = registry
    token = "tok-" + os.urandom(16).hex()
    (tmp_path / "token").write_text(token + "\n")
    port = free_port()
    proc = subprocess.Popen([MLOPS_NB, "serve", "--port", str(port), "--token-file", tmp_path / "token", "--token-for-scoring"],
                            cwd=project.root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        wait_until_up(url, 180, proc)
        assert token not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        refused = post(url, {"dataframe_records": records(X.head(2))})
        assert refused.status_code == 401 and refused.json()["error_code"] == "UNAUTHENTICATED"
        scored = [post(url, {"dataframe_records": records(X.head(1))}, headers=auth) for _ in range(2)]
        assert [r.status_code for r in scored] == [200, 200]
        labels = {"labels": [{"request_id": scored[0].headers["x-request-id"], "label": 1}]}
        missing = httpx.post(f"{url}/feedback", json=labels, timeout=30)
        wrong = httpx.post(f"{url}/feedback", json=labels, headers={"Authorization": "Bearer nope"}, timeout=30)
        assert (missing.status_code, wrong.status_code) == (401, 401) and "sent no token" in missing.json()["message"]
        assert "sent a wrong token" in wrong.json()["message"] and token not in missing.text + wrong.text
        right = httpx.post(f"{url}/feedback", json=labels, headers=auth, timeout=30)
        assert right.status_code == 200 and right.json()["accepted"] == 1
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'mlops_nb_unauthorized_total{endpoint="POST /feedback"} 2.0' in metrics
        assert 'mlops_nb_unauthorized_total{endpoint="POST /invocations"} 1.0' in metrics

        # the command line sends labels from a file to the server, with the token from a file or not at all
        (tmp_path / "labels.csv").write_text(f"request_id,label\n{scored[1].headers['x-request-id']},0\n")
        cli = [MLOPS_NB, "feedback", tmp_path / "labels.csv", "--url", url]
        without = subprocess.run(cli, cwd=project.root, env=clean_env(), capture_output=True, text=True)
        assert without.returncode != 0 and "refused the feedback (401)" in without.stderr + without.stdout
        sent = subprocess.run([*cli, "--token-file", tmp_path / "token"], cwd=project.root, env=clean_env(),
                              capture_output=True, text=True)
        assert sent.returncode == 0 and "1 labels recorded" in sent.stdout, sent.stdout + sent.stderr
        assert token not in without.stdout + without.stderr + sent.stdout + sent.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert token not in out and "Traceback" not in out
