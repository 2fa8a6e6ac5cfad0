"""Warm kernels give what cold kernels give; sweeps; reproduce; Dask; a real MLflow tracking server."""
import json, os, re, subprocess, sys, time
from pathlib import Path
import pytest
from conftest import NO_JOB_RUNNER, free_port, make_project, wait_until_up, clean_env, interruptible, started_by, zygote_processes, download, wait_or_dump

pytestmark = pytest.mark.slow


def texts(notebook: Path) -> list:
    "The text outputs of an executed notebook, with run-specific folders and ids masked."
    out = []
    for c in json.loads(notebook.read_text())["cells"]:
        if "injected-parameters" in c.get("metadata", {}).get("tags", []): continue
        for o in c.get("outputs", []):
            t = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            out.append(re.sub(r"[0-9a-f]{32}", "<id>", t))
    return out


def first_steps(project, n: int) -> str:
    "A spec of the train pipeline's first `n` steps, written into the project (for tests that need no registry)."
    import yaml
    spec = yaml.safe_load((project.root / "pipelines" / "train.yaml").read_text())
    spec |= {"name": f"train-first-{n}", "steps": spec["steps"][:n]}
    (project.root / "pipelines" / "first.yaml").write_text(yaml.safe_dump(spec))
    return "pipelines/first.yaml"


def test_warm_and_cold_kernels_give_identical_notebooks_and_results(tmp_path):
    runs = {}
    for mode in ("warm", "cold"):
        project = make_project(tmp_path / mode)
        project.run("run", first_steps(project, 4), "-p", "n_rows=1500", *(["--cold"] if mode == "cold" else []), check=True)
        runs[mode] = (project, project.pipeline_runs()[-1])
    (pw, rw), (pc, rc) = runs["warm"], runs["cold"]
    assert {k: v for k, v in rw.data.metrics.items() if not k.endswith("seconds")} == \
           {k: v for k, v in rc.data.metrics.items() if not k.endswith("seconds")}
    for step in ("ingest", "validate", "train", "evaluate"):
        a = pw.root / rw.data.tags["mlops_nb.run_dir"] / step / f"{step}.ipynb"
        b = pc.root / rc.data.tags["mlops_nb.run_dir"] / step / f"{step}.ipynb"
        assert texts(a) == texts(b), step


def test_sweep_runs_the_grid_under_one_run_shares_upstream_and_ranks(project):
    r = project.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", "--sweep", "model=linear,hgb", "--sweep", "max_depth=3", check=True)
    c = project.client()
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    sweep = c.search_runs([exp], "tags.mlops_nb.kind = 'sweep'")[0]
    members = c.search_runs([exp], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    assert sweep.info.status == "FINISHED" and len(members) == 2
    assert {json.loads(m.data.tags["mlops_nb.member"])["model"] for m in members} == {"linear", "hgb"}
    ingests = [s for m in members for s in c.search_runs([exp], f"tags.mlflow.parentRunId = '{m.info.run_id}' and tags.mlops_nb.step = 'ingest'")]
    assert sorted(s.data.tags.get("mlops_nb.cached", "false") for s in ingests) == ["false", "true"]  # ran once, reused once
    best = max(members, key=lambda m: m.data.metrics["test_roc_auc"])
    assert sweep.data.tags["mlops_nb.best_run"] == best.info.run_id
    ranking = Path(download(c, sweep.info.run_id, "sweep_ranking.csv")).read_text().splitlines()
    assert len(ranking) == 3 and best.info.run_id in ranking[1]
    assert "best:" in r.stdout


def test_reproduce_gives_identical_metrics_and_names_a_changed_data_file(project):
    from mlops_nb.ml.data import make_demo_data
    data = project.root / "parts.csv"
    make_demo_data(1500, seed=11).to_csv(data, index=False)
    project.run("run", "pipelines/train.yaml", "-p", "data=parts.csv", "-p", "model=rf", "-p", "n_estimators=30", check=True)
    original = project.pipeline_runs()[-1].info.run_id
    c = project.client()
    registry = lambda: ([(v.version, sorted(v.aliases)) for v in c.search_model_versions("name = 'parts'")],
                        c.get_registered_model("parts").aliases)  # named after its data file
    before = registry()
    r = project.run("reproduce", original, check=True)
    assert "identical" in r.stdout and "✓ data (data): same" in r.stdout and "✓ git commit: same" in r.stdout
    tables = re.search(r"all \d+ metrics and (\d+) evidence tables", " ".join(r.stdout.split()))
    assert tables and int(tables[1]) >= 4, r.stdout  # evaluate's intervals, importance, SHAP values, slices: each compared
    for part in ("step notebooks", "project code", "Python", "packages", "settings"):  # as the step cache compares
        assert f"✓ {part}: same" in r.stdout, r.stdout
    assert "not re-run: register, gate" in " ".join(r.stdout.split())
    assert registry() == before  # no new version, no alias moved
    rerun = project.pipeline_runs()[-1]
    assert rerun.data.tags["mlops_nb.reproduces"] == original
    assert all(k.data.tags.get("mlops_nb.cached") != "true" for k in project.client().search_runs(
        [rerun.info.experiment_id], f"tags.mlflow.parentRunId = '{rerun.info.run_id}'"))  # the cache was off
    make_demo_data(1500, seed=12).to_csv(data, index=False)
    r = project.run("reproduce", original)
    out = " ".join(r.stdout.split())
    assert r.returncode == 1 and "✗ data (data): DIFFERS" in out and "metrics differ" in out
    assert "evidence tables differ" in out and "importance.csv" in out  # the evidence moved with the data


def test_dask_executor_runs_steps_on_a_local_cluster(project):
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=1000", "--executor", "dask", "--workers", "2", check=True)
    run = project.pipeline_runs()[-1]
    assert run.info.status == "FINISHED" and run.data.metrics["registered_version"] == 1


def test_pipeline_against_a_real_tracking_server(project, tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "artifacts"),
                               "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env=clean_env(**NO_JOB_RUNNER))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, 180, server)
        env = clean_env()
        r = subprocess.run([str(Path(sys.executable).parent / "mlops-nb"), "run", "pipelines/train.yaml", "-p", "n_rows=1000"],
                           cwd=project.root, env={**env, "MLFLOW_TRACKING_URI": url}, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        from mlflow import MlflowClient
        c = MlflowClient(url)
        run = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.kind = 'pipeline'")[0]
        assert run.info.status == "FINISHED"
        evaluate = c.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}' and tags.mlops_nb.step = 'evaluate'")[0]
        assert {f.path for f in c.list_artifacts(evaluate.info.run_id, "notebook")} == {"notebook/evaluate.ipynb", "notebook/evaluate.html"}
        assert str(c.get_model_version_by_alias("assembly-defect", "champion").version) == "1"
        assert not (project.root / "mlflow.db").exists()  # nothing went to the embedded store
    finally:
        os.killpg(server.pid, 15); server.wait(30)


def mlflow_server(port: int, folder: Path) -> subprocess.Popen:
    "A tracking server on 127.0.0.1:`port` with its store and artifacts in `folder`, answering."
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--backend-store-uri", f"sqlite:///{folder / 'server.db'}", "--artifacts-destination",
                               str(folder / "artifacts"), "--workers", "1"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True, env=clean_env(**NO_JOB_RUNNER))
    wait_until_up(f"http://127.0.0.1:{port}", 180, server)
    return server


def test_a_tracking_server_killed_mid_step_ends_the_run_and_the_next_command_sends_what_was_kept(project, tmp_path,
                                                                                              reaper):
    "The team's server dies while `train` runs: one clear line, exit 1, in bounded time; nothing lost or left RUNNING."
    import signal
    from mlflow import MlflowClient
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = mlflow_server(port, tmp_path)
    env = {**clean_env(), "MLFLOW_TRACKING_URI": url}
    run = subprocess.Popen([str(Path(sys.executable).parent / "mlops-nb"), "run", "pipelines/train.yaml", "-p",
                            "n_rows=800"], cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    reaper.append(run.pid)
    try:
        deadline = time.monotonic() + 300
        while not list((project.root / "runs").glob("*/train/train.ipynb")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(30)
        killed = time.monotonic()
        out, err = run.communicate(timeout=120)  # the documented bound is 60 s (SERVER_PATIENCE); this waits longer
        took = time.monotonic() - killed
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
    said = " ".join(err.split())
    assert run.returncode == 1 and f"the tracking server {url} could not be reached" in said, out[-2000:] + err[-2000:]
    assert "Traceback" not in err and took < 60, (took, err[-1000:])
    assert list((project.root / "runs" / ".journal" / "kept").glob("*.json"))  # what it could not send, kept
    server = mlflow_server(port, tmp_path)  # the server is back: the next command sends it
    try:
        r = subprocess.run([str(Path(sys.executable).parent / "mlops-nb"), "runs"], cwd=project.root, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        c = MlflowClient(url)
        runs = c.search_runs([c.get_experiment_by_name("mlops-nb").experiment_id])
        assert runs and not [x for x in runs if x.info.status == "RUNNING"], ([(x.info.run_name, x.info.status) for x in runs], err[-2000:])
        parent = next(x for x in runs if x.data.tags.get("mlops_nb.kind") == "pipeline")
        assert parent.info.status == "FAILED" and parent.data.tags["mlops_nb.unreachable"] == "connection refused"
        assert not list((project.root / "runs" / ".journal" / "kept").glob("*.json"))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_interrupting_a_sweep_stops_its_members_and_closes_every_run(project, reaper):
    import glob, signal
    env = clean_env(MLOPS_NB_KEEP_WARM="0")  # a zygote of its own: the reaper finds what the runner left by its pid
    # a train step that only the interrupt ends: 100000 rounds take minutes even on an idle machine
    p = subprocess.Popen([str(Path(sys.executable).parent / "mlops-nb"), "run", "pipelines/train.yaml", "--sweep", "model=hgb,rf",
                          "-p", "n_rows=1500", "-p", "n_estimators=100000", "-p", "learning_rate=0.001"],
                         cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         preexec_fn=interruptible)
    reaper.append(p.pid)
    deadline = time.monotonic() + 300  # until a member's train step is executing (its kernel writes the notebook)
    while not glob.glob(str(project.root / "runs" / "*" / "train" / "train.ipynb")) and time.monotonic() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    # the members' kernels are stopped: no waiting for a long training (minutes); the runner's own bounds are 60 s for
    # its step threads, then 30 s to end (cli.main), and a busy machine slows the closing of runs
    assert wait_or_dump(p, 180) == 130
    c = project.client()
    exp = c.get_experiment_by_name("mlops-nb").experiment_id
    sweep = c.search_runs([exp], "tags.mlops_nb.kind = 'sweep'")[0]
    members = c.search_runs([exp], f"tags.mlflow.parentRunId = '{sweep.info.run_id}'")
    assert sweep.info.status == "KILLED" and members and all(m.info.status == "KILLED" for m in members)


def test_a_lost_zygote_falls_back_to_cold_kernels(project):
    import glob, signal
    env = clean_env(MLOPS_NB_KEEP_WARM="0")  # the runner's own zygote (one kept warm: the test below)
    p = subprocess.Popen([str(Path(sys.executable).parent / "mlops-nb"), "run", first_steps(project, 3), "-p", "n_rows=1000"],
                         cwd=project.root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not glob.glob(str(project.root / "runs" / "*" / "validate")) and time.time() < deadline: time.sleep(0.05)
    zygote = [pid for pid in started_by(p.pid)  # a child of the runner; its kernels are children of init
              if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == p.pid]
    assert len(zygote) == 1, zygote
    os.kill(int(zygote[0]), signal.SIGKILL)
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, out[-3000:]
    assert project.pipeline_runs()[-1].info.status == "FINISHED"


LOOK = """name: look
steps:
  - {name: look, notebook: look.ipynb}
"""


def look_project(root: Path, value: str):
    "A project whose one step imports pandas and the project's own `helper`, and writes what its kernel saw to `out`."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    project = make_project(root)
    params = new_code_cell("out: str = 'seen.json'\nhold: int = 0")
    params.metadata["tags"] = ["parameters"]
    look = new_code_cell("import json, os, sys, time\n"
                         "warm = 'pandas' in sys.modules  # imported before this line: by the zygote it was forked from\n"
                         "import pandas, helper\n"
                         "open(out, 'w').write(json.dumps({'warm': warm, 'helper': helper.VALUE, 'pid': os.getpid()}))\n"
                         "while hold: time.sleep(0.1)")
    nbformat.write(new_notebook(cells=[params, look]), project.root / "pipelines" / "look.ipynb")
    (project.root / "pipelines" / "helper.py").write_text(f"VALUE = {value!r}\n")
    (project.root / "pipelines" / "look.yaml").write_text(LOOK)
    return project


def zygotes_with(marker: str) -> list[int]:
    "The kept zygote whose environment holds `marker`, and the kernels forked from it that still run."
    found = []
    for d in zygote_processes():
        try:
            if marker.encode() in (d / "environ").read_bytes().split(b"\0"): found.append(int(d.name))
        except OSError:
            pass
    return found


def test_the_zygote_stays_warm_for_any_project_s_next_run_and_a_killed_run_loses_only_its_kernels(tmp_path):
    import signal
    (tmp_path / "key").mkdir()
    marker = f"PYTHONPATH={tmp_path / 'key'}"  # part of a kept zygote's key: this test's runs get one of their own
    env = clean_env(MLOPS_NB_KEEP_WARM="600", PYTHONPATH=str(tmp_path / "key"))
    a, b = look_project(tmp_path / "a", "a"), look_project(tmp_path / "b", "b")

    def run(project, out, *more):
        return subprocess.Popen([str(Path(sys.executable).parent / "mlops-nb"), "run", "pipelines/look.yaml", "-p",
                                 f"out={out}", *more], cwd=project.root, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def alone(timeout=60) -> list[int]:  # once the run's kernels have ended: the zygote alone
        deadline = time.monotonic() + timeout
        while len(found := zygotes_with(marker)) > 1 and time.monotonic() < deadline: time.sleep(0.05)
        return found

    zygote = []
    try:
        first = run(a, tmp_path / "a.json")
        assert first.wait(300) == 0, first.stdout.read()[-3000:]
        zygote = alone()
        assert len(zygote) == 1, zygote  # still there after the run
        second = run(b, tmp_path / "b.json")  # another project's run: the same zygote, and its own code
        assert second.wait(300) == 0, second.stdout.read()[-3000:]
        seen = {p: json.loads((tmp_path / f"{p}.json").read_text()) for p in ("a", "b")}
        assert (seen["a"]["helper"], seen["b"]["helper"]) == ("a", "b") and seen["b"]["warm"]
        assert alone() == zygote
        held = run(b, tmp_path / "held.json", "-p", "hold=1", "--force")  # killed while its step runs
        deadline = time.monotonic() + 300
        while not (tmp_path / "held.json").exists() and held.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        kernel = json.loads((tmp_path / "held.json").read_text())["pid"]
        assert kernel in zygotes_with(marker)
        os.killpg(held.pid, signal.SIGKILL)
        held.wait()
        assert alone() == zygote  # its kernel went with it (it watches its runner); the zygote stays for the next
        third = run(a, tmp_path / "third.json", "--force")
        assert third.wait(300) == 0, third.stdout.read()[-3000:]
        assert alone() == zygote
    finally:
        for pid in zygote: os.kill(pid, signal.SIGKILL)


def test_kept_zygotes_are_listed_stopped_and_leave_after_their_idle_time_even_with_a_dead_runs_lease(tmp_path):
    """`mlops-nb kernels` lists a kept zygote with its memory and `--stop` stops it, leaving no file; one left alone
    leaves after its idle time although a process the last run forked still holds that run's lease."""
    import shutil, signal, socket, tempfile
    home = Path(tempfile.mkdtemp(prefix="z"))  # a TMPDIR of the test's own (short: a unix socket's path is <108 bytes)
    folder, cli = home / f"mlops-nb-{os.getuid()}", str(Path(sys.executable).parent / "mlops-nb")
    project, lingering, held = look_project(tmp_path / "a", "a"), None, None
    kept = lambda: sorted(folder.glob("zygote-*.sock"))

    def run(keep: str):
        env = clean_env(MLOPS_NB_KEEP_WARM=keep, TMPDIR=str(home))
        r = subprocess.run([cli, "run", "pipelines/look.yaml", "--force", "-p", f"out={tmp_path / 'o.json'}"],
                           cwd=project.root, env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return env

    try:
        env = run("600")
        listed = subprocess.run([cli, "kernels"], env=env, capture_output=True, text=True).stdout
        assert "1 zygote(s) kept warm" in listed and " MB " in listed, listed
        pid = int(listed.split("┃ python")[1].split("│")[1])
        stopped = subprocess.run([cli, "kernels", "--stop"], env=env, capture_output=True, text=True).stdout
        assert "stopped 1" in stopped and not kept() and not list(folder.glob("*.lock")), stopped
        assert not Path(f"/proc/{pid}").exists() or b"zygote" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        env = run("4")
        sock = kept()[0]  # a lease that outlives the run holding it: the run forked a process, then ended
        lingering = subprocess.Popen([sys.executable, "-c", "import os, sys, time\nfrom mlops_nb.runner.early import lease\n"
                                      "s = lease(sys.argv[1])\nif os.fork() == 0: time.sleep(600)\nos._exit(0)", str(sock)],
                                     env=env, start_new_session=True)
        lingering.wait(60)
        deadline = time.monotonic() + 120  # 4 s idle after a lease check (every 5 s): ~10 s on an idle machine
        while sock.exists() and time.monotonic() < deadline: time.sleep(0.1)
        assert not sock.exists() and not list(folder.glob("*.lock")), sorted(folder.iterdir())
        # the same when that process had ended before the zygote read its request (a busy machine: CI hung so)
        env = run("4")
        sock, ended = kept()[0], subprocess.Popen(["true"])
        ended.wait()
        held = socket.socket(socket.AF_UNIX)
        held.connect(str(sock))
        held.sendall(json.dumps({"lease": True, "folder": None, "pid": ended.pid}).encode() + b"\n")
        deadline = time.monotonic() + 120
        while sock.exists() and time.monotonic() < deadline: time.sleep(0.1)
        assert not sock.exists() and not list(folder.glob("*.lock")), sorted(folder.iterdir())
    finally:
        if held is not None:
            held.close()
        if lingering is not None:
            os.killpg(lingering.pid, signal.SIGKILL)
        subprocess.run([cli, "kernels", "--stop"], env=clean_env(TMPDIR=str(home)), capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
