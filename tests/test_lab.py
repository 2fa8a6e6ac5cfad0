"""JupyterLab, as a person uses it (real JupyterLab, headless Chromium driven by Playwright): the train pipeline's
first step notebook run top to bottom with its defaults; and the mlops-nb panel: a form with a bad value, a run watched
to its end, its executed notebook opened, two runs compared, a version promoted and rolled back; MLflow's UI as a
launcher tile. Screenshots of each view go to test-artifacts/lab/."""
import json, os, re, secrets, shutil, signal, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import ARTIFACTS, clean_env, free_port, make_project, wait_for_url

pytestmark = pytest.mark.slow
JUPYTER = str(Path(sys.executable).parent / "jupyter")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    "`make lab`'s JupyterLab (127.0.0.1, the project's environment as kernel) on a throw-away project, with a known token."
    project = make_project(tmp_path_factory.mktemp("labproject"))
    home = tmp_path_factory.mktemp("labhome")
    port, token = free_port(), secrets.token_hex(16)
    env = clean_env()
    env.update(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"))
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the screenshots
    proc = subprocess.Popen([JUPYTER, "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project.root}",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
                            + (["--allow-root"] if os.getuid() == 0 else []),
                            env=env, stdout=subprocess.DEVNULL, stderr=open(home / "lab.log", "w"), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try: wait_for_url(f"{url}/api/status?token={token}", 180, proc)
    except AssertionError as e: raise AssertionError(f"{e}; JupyterLab's log:\n{(home / 'lab.log').read_text()}") from None
    yield project, url, token
    os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)


def test_server_binds_loopback_and_wants_the_token(lab):
    project, url, token = lab
    try: urllib.request.urlopen(f"{url}/api/contents/pipelines", timeout=5); status = 200
    except urllib.error.HTTPError as e: status = e.code
    assert status == 403
    listing = json.load(urllib.request.urlopen(f"{url}/api/contents/pipelines?token={token}", timeout=5))
    assert "ingest.ipynb" in {c["name"] for c in listing["content"]}


def test_first_train_step_runs_top_to_bottom_in_jupyterlab(lab, browser, tmp_path):
    project, url, token = lab
    from mlops_nb.runner.spec import load_spec
    first = load_spec(project.root / "pipelines" / "train.yaml").steps[0].notebook.name
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/lab/tree/pipelines/{first}?token={token}")
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=240_000)
    page.locator(".jp-StatusBar-Item", has_text="| Idle").first.wait_for(timeout=240_000)  # the kernel is up and connected
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    try:
        page.wait_for_function("""() => {
            const ps = [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt')];
            return ps.length > 0 && ps.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=300_000)
    except Exception:
        page.screenshot(path=str(tmp_path / "lab-timeout.png"))
        prompts = page.locator(".jp-NotebookPanel .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
        raise AssertionError(f"cells did not all finish within 5 minutes: prompts {prompts}; screenshot {tmp_path / 'lab-timeout.png'}")
    page.screenshot(path=str(tmp_path / "lab.png"))
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']", has_text="Traceback")
    assert errors.count() == 0, errors.first.inner_text()
    page.keyboard.press("Control+s")  # save, then read what the kernel produced from the file itself
    nb_path = project.root / "pipelines" / first
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            nb = json.loads(nb_path.read_text())
        except json.JSONDecodeError:  # read while JupyterLab writes it: not saved yet (seen in suite runs)
            time.sleep(0.3)
            continue
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if all(c.get("execution_count") for c in code): break
        time.sleep(0.3)
    assert all(c.get("execution_count") for c in code), "the notebook was not saved with every cell run"
    failed = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not failed, f"{first}: {failed[0]['ename']}: {failed[0]['evalue']}"
    assert (project.root / "mlflow.db").exists()  # it recorded into the project's own store, as headless runs do
    page.close()


def api(url: str, token: str, path: str, body: dict | bytes | None = None, method: str | None = None, auth: bool = True):
    "(status, JSON) of the panel's API at `path`; with the token in the header as JupyterLab's own requests send it."
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{url}/mlops-nb/api/{path}", data=data, method=method,
                                 headers={"Authorization": f"token {token}"} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r: return r.status, json.load(r)
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read() or b"{}")


def test_the_panel_api_wants_the_token_checks_values_as_the_cli_does_and_bounds_requests(lab):
    project, url, token = lab
    assert api(url, token, "project", auth=False)[0] == 403
    assert api(url, token, "jobs", {"pipeline": "pipelines/train.yaml"}, auth=False)[0] == 403  # no token, no XSRF
    status, p = api(url, token, "project")
    assert status == 200 and Path(p["root"]) == project.root.resolve()
    train = next(s for s in p["pipelines"] if s["name"] == "train")
    assert {"name": "model", "type": "str", "default": "hgb", "choices": ["linear", "rf", "hgb"]}.items() <= \
        next(q for q in train["params"] if q["name"] == "model").items()
    cli = project.run("run", "pipelines/train.yaml", "-p", "model=svm")
    status, e = api(url, token, "jobs", {"pipeline": "pipelines/train.yaml", "params": {"model": "svm"}})
    assert status == 400 and e["message"] in cli.stderr  # the CLI's own message, word for word
    assert api(url, token, "jobs", {"pipeline": "../settings.ini"})[0] == 400
    assert api(url, token, "jobs", b"{not json")[1] == {"message": "the request body is not JSON"}
    assert api(url, token, "jobs", json.dumps({"pipeline": "x" * 70_000}).encode())[0] == 413
    assert api(url, token, "runs/0123abcd")[0] == 404 and api(url, token, "jobs/0123-ab")[0] == 404
    status, e = api(url, token, "diffs/0123abcd/4567abcd")
    assert status == 404 and "no run 0123abcd" in e["message"], e
    assert api(url, token, "diffs/..%2Fx/4567abcd")[0] == 404
    # a comparison's page: for the logged-in only, its scripts confined to a sandbox (no access to Jupyter's origin)
    page = project.root / "runs" / ".diffs" / "a-vs-b" / "probe.html"
    page.parent.mkdir(parents=True)
    page.write_text("<p>secret outputs</p>")
    req = lambda auth: urllib.request.Request(f"{url}/mlops-nb/api/diffs/pages/a-vs-b/probe.html",
                                              headers={"Authorization": f"token {token}"} if auth else {})
    with urllib.request.urlopen(req(True), timeout=60) as r:
        assert r.read() == b"<p>secret outputs</p>" and "sandbox allow-scripts" in r.headers["Content-Security-Policy"]
    try:
        with urllib.request.urlopen(req(False), timeout=60) as r: assert b"secret outputs" not in r.read()  # the login page
    except urllib.error.HTTPError as e: assert e.code == 403
    shutil.rmtree(page.parent.parent)
    assert not list((project.root / "runs").glob(".lab/*"))  # nothing was started
    # a run that fails in a step: its progress names the step, the failing cell and the error, and the run is FAILED
    status, job = api(url, token, "jobs", {"pipeline": "pipelines/train.yaml", "params": {"target": "no_such_column"}})
    assert status == 201 and job["state"] == "running"
    deadline = time.monotonic() + 300
    while job["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)
        job = api(url, token, f"jobs/{job['job']}")[1]
    failed = next(s for s in job["steps"] if s["status"] == "failed")
    assert job["state"] == "failed" and failed["step"] == "ingest" and "no_such_column" in failed["error"]["evalue"]
    assert failed["error"]["cell"] >= 1 and failed["notebook"] == f"runs/{job['run_id']}/ingest/ingest.ipynb"
    assert project.client().get_run(job["run_id"]).info.status == "FAILED"
    assert [s["status"] for s in job["steps"][1:]] == ["skipped"] * 5


def test_mlflow_ui_is_a_launcher_tile_on_the_project_store(lab, browser):
    project, url, token = lab
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{url}/lab?reset&token={token}")  # a fresh workspace: the launcher
    tile = page.locator(".jp-LauncherCard", has_text="MLflow")
    tile.wait_for(timeout=240_000)
    shot(page, "launcher-mlflow-tile")
    # the tile opens /mlflow/ in a new tab; what it serves is MLflow's own UI and API, on the project's store
    with urllib.request.urlopen(f"{url}/mlflow/?token={token}", timeout=180) as r:
        assert "<title>MLflow</title>" in r.read().decode()
    with urllib.request.urlopen(f"{url}/mlflow/ajax-api/2.0/mlflow/experiments/search?max_results=10&token={token}") as r:
        assert "mlops-nb" in {e["name"] for e in json.load(r)["experiments"]}
    page.close()


def shot(page, name: str) -> None:
    "A screenshot of the page in test-artifacts/lab/ (CI keeps them; the docs show them)."
    (ARTIFACTS / "lab").mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "lab" / f"{name}.png"))


def open_panel(page, url: str, token: str, name: str = "") -> None:
    "JupyterLab on a fresh workspace, the panel opened and widened; a screenshot called `name` if given."
    page.goto(f"{url}/lab?reset&token={token}")
    tab = page.locator('.lm-TabBar-tab[data-id="mlops-nb-panel"]')
    tab.wait_for(timeout=240_000)
    tab.click()
    page.locator('.mlops-field[data-param="n_rows"] input').wait_for(timeout=60_000)
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first.bounding_box()
    page.mouse.move(handle["x"] + 1, handle["y"] + 300)  # widen the sidebar, as a person would, for the screenshots
    page.mouse.down()
    page.mouse.move(handle["x"] + 240, handle["y"] + 300, steps=5)
    page.mouse.up()
    if name:
        shot(page, name)


def test_the_panel_runs_a_pipeline_watches_it_compares_runs_promotes_and_rolls_back(lab, browser):
    from mlops_nb.track.gate import history
    project, url, token = lab
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=2000", check=True)  # a first run (hgb), to compare with
    before = len(project.pipeline_runs())
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    open_panel(page, url, token, "panel-pipelines")
    # a bad value: the CLI's message, its field marked, nothing started
    page.fill('.mlops-field[data-param="n_rows"] input', "many")
    page.click(".mlops-run")
    error = page.locator(".mlops-runbar .mlops-error")
    error.wait_for()
    assert "parameter 'n_rows' expects int" in error.inner_text()
    assert page.locator('.mlops-field.mlops-invalid[data-param="n_rows"]').count() == 1
    shot(page, "panel-form-error")
    # model=rf: Run starts it on the server, and the steps' states follow until it ends
    page.fill('.mlops-field[data-param="n_rows"] input', "2000")
    page.select_option('.mlops-field[data-param="model"] select', "rf")
    page.click(".mlops-run")
    page.locator(".mlops-job").wait_for()
    page.locator('.mlops-job[data-state="finished"]').wait_for(timeout=600_000)
    statuses = dict(zip(page.locator(".mlops-step td:first-child").all_inner_texts(),
                        page.locator(".mlops-step .mlops-step-status").all_inner_texts()))
    assert statuses == {"ingest": "cached", "validate": "cached", "train": "done", "evaluate": "done", "register": "done",
                        "gate": "done"}, (statuses, page.locator(".mlops-notes").inner_text())
    notes = page.locator(".mlops-notes").inner_text()  # what the steps said, and why train ran again
    assert "validate: timestamp: expanded into year" in notes and "train ran: parameter model: 'hgb' -> 'rf'" in notes
    shot(page, "panel-progress")
    runs = project.pipeline_runs()
    assert len(runs) == before + 1 and runs[-1].data.params["model"] == "rf" and runs[-1].info.status == "FINISHED"
    # the executed train notebook opens as a notebook in JupyterLab
    page.locator('.mlops-step[data-step="train"] .mlops-open').click()
    label = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="train.ipynb")
    label.wait_for(timeout=120_000)
    page.locator(".jp-NotebookPanel:visible .jp-OutputArea-output").first.wait_for(timeout=120_000)  # its outputs
    shot(page, "panel-executed-notebook")
    # Runs: pick the two newest, compare them side by side
    page.click('.mlops-tab[data-view="runs"]')
    rows = page.locator(".mlops-run-row")
    rows.nth(1).wait_for()
    assert rows.first.get_attribute("data-run") == runs[-1].info.run_id  # newest first
    rows.nth(0).locator(".mlops-pick").check()
    rows.nth(1).locator(".mlops-pick").check()
    page.click(".mlops-compare")
    model_row = page.locator('.mlops-comparison .mlops-differs[data-key="model"]')
    model_row.wait_for()
    assert model_row.locator("td").all_inner_texts()[1:] == ["rf", "hgb"]
    assert page.locator('.mlops-comparison .mlops-compare-row[data-key="n_rows"]:not(.mlops-differs)').count() == 1
    # ... and their notebooks: the steps the cache gave both runs, the changed train step opening nbdime's diff in a tab
    train = page.locator('.mlops-notebooks .mlops-nb-step[data-step="train"]')
    train.wait_for(timeout=300_000)
    status = dict(page.locator(".mlops-nb-step").evaluate_all("rows => rows.map(r => [r.dataset.step, r.dataset.status])"))
    assert all(status[s].startswith("same outputs, taken from run ") for s in ("ingest", "validate")), status
    assert status["train"] == "changed" and page.locator(".mlops-nb-step .mlops-open-diff").count() >= 1, status
    shot(page, "panel-compare")
    train.locator(".mlops-open-diff").click()
    frame = page.frame_locator(".mlops-diff-view iframe")
    frame.locator(".jp-Cell-diff:not(.jp-Diff-unchanged)").first.wait_for(timeout=120_000)  # nbdime's app, sandboxed
    shown = frame.locator("#nbdime-root").inner_text()
    assert 'model = "rf"' in shown and 'model = "hgb"' in shown, shown[:2000]  # the injected parameters, side by side
    shot(page, "panel-notebook-diff")
    # what varies among the runs picked, with the metric, best first, and the figure `runs --compare --plot` draws
    many = page.locator(".mlops-many-row")
    many.nth(1).wait_for(timeout=120_000)
    assert many.count() == 2 and "model" in page.locator(".mlops-many-table th").all_inner_texts()
    assert page.locator(".mlops-compare-plot").evaluate("img => img.complete && img.naturalWidth > 300")
    ids = [r.info.run_id for r in project.pipeline_runs()]  # any number of runs (the API; the panel sends those picked)
    status, c = api(url, token, f"compare?ids={','.join(ids)}")
    assert status == 200 and len(c["rows"]) == len(ids) and c["plot"].startswith("data:image/png;base64,"), c
    assert api(url, token, "compare?ids=../x")[0] == 400
    rows.first.locator(".mlops-run-link").click()  # a run's steps, each with its executed notebook
    page.locator(".mlops-run-detail .mlops-run-step").nth(5).wait_for()
    assert page.locator('.mlops-run-detail .mlops-run-step[data-step="train"] .mlops-open').count() == 1
    mlflow_link = page.locator(".mlops-run-detail .mlops-mlflow-link").get_attribute("href")
    assert mlflow_link.startswith(f"{url}/mlflow/#/experiments/") and runs[-1].info.run_id in mlflow_link  # via the MLflow tile
    # Models: promote the version that is not champion, then roll back; both land in the registry's history
    page.click('.mlops-tab[data-view="models"]')
    page.locator(".mlops-version").nth(1).wait_for()
    client = project.client()
    champion = str(client.get_model_version_by_alias("assembly-defect", "champion").version)
    other = next(v for v in page.locator(".mlops-version").evaluate_all("rows => rows.map(r => r.dataset.version)")
                 if v != str(champion))
    page.select_option(".mlops-promote-version", other)
    page.fill(".mlops-reason", "rf is steadier on the night shift")
    page.click(".mlops-promote")
    page.locator(".mlops-message .mlops-ok", has_text=f"champion is version {other}").wait_for()
    assert str(client.get_model_version_by_alias("assembly-defect", "champion").version) == other
    shot(page, "panel-models")
    page.fill(".mlops-reason", "the line asked for the old one back")
    page.click(".mlops-rollback")
    page.locator(".mlops-message .mlops-ok", has_text=f"champion is version {champion}").wait_for()
    assert str(client.get_model_version_by_alias("assembly-defect", "champion").version) == champion
    events = history(client, "assembly-defect")[-2:]
    assert [(e["action"], e["version"], e["reason"]) for e in events] == [
        ("promote", other, "rf is steadier on the night shift"), ("rollback", str(champion), "the line asked for the old one back")]
    assert "the line asked for the old one back" in page.locator(".mlops-history").inner_text()  # the history it shows
    page.close()



def test_the_panel_searches_with_optuna_and_shows_the_trials_as_they_finish(lab, browser):
    import optuna
    project, url, token = lab
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    open_panel(page, url, token)
    page.fill('.mlops-field[data-param="n_rows"] input', "2000")
    page.click(".mlops-search > summary")
    space = lambda name: f'.mlops-field[data-space="{name}"] input'
    assert page.input_value(space("max_depth")) == "int 2..12"  # the spec's search block fills the form
    # a space outside the parameter's type: the CLI's message, its field marked, nothing started
    page.fill(space("max_depth"), "float 0.5..2")
    page.click(".mlops-search-run")
    error = page.locator(".mlops-runbar .mlops-error")
    error.wait_for()
    assert "float values for a parameter of type int" in error.inner_text()
    assert page.locator('.mlops-field.mlops-invalid[data-space="max_depth"]').count() == 1
    # 4 trials of hgb over max_depth and n_estimators; learning_rate emptied: not searched
    page.fill(space("model"), "choice hgb")
    page.fill(space("max_depth"), "int 2..6")
    page.fill(space("learning_rate"), "")
    page.fill('.mlops-setting-input[data-setting="n_trials"]', "4")
    page.click(".mlops-search-run")
    page.locator(".mlops-trial").first.wait_for(timeout=600_000)  # live: a trial shows as soon as it is stored
    live = page.locator('.mlops-job[data-state="running"]').count()
    page.locator('.mlops-job[data-state="finished"]').wait_for(timeout=600_000)
    assert live == 1, "the first trial showed only after the search had ended"
    assert page.locator(".mlops-trial-count").inner_text() == "4 of 4 trials"
    assert page.locator(".mlops-trial.mlops-best").count() == 1
    shot(page, "panel-search")
    study_name = page.locator(".mlops-trials").get_attribute("data-study")
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{project.root / 'optuna.db'}")
    assert len(study.trials) == 4 and all(set(t.params) == {"model", "max_depth", "n_estimators"} for t in study.trials)
    best = page.locator(".mlops-trial.mlops-best").get_attribute("data-trial")
    assert int(best) == study.best_trial.number
    runs = project.pipeline_runs()  # the best values trained, registered, gated: the newest pipeline run
    assert runs[-1].data.params["max_depth"] == str(study.best_params["max_depth"])
    # Runs: the run the search trained links to its trials, compared on what varies and their cross-validated score
    page.click(".mlops-tab[data-view='runs']")
    link = page.locator(f'.mlops-run-row[data-run="{runs[-1].info.run_id}"] .mlops-group-link[data-kind="search"]')
    link.click()
    page.locator(".mlops-many-row").first.wait_for()
    shown = {r.get_attribute("data-run") for r in page.locator(".mlops-many-row").all()}
    trial_runs = project.client().search_runs(
        [runs[-1].info.experiment_id], f"tags.mlflow.parentRunId = '{link.get_attribute('data-group')}' and tags.mlops_nb.kind = 'trial'")
    assert shown == {t.info.run_id for t in trial_runs} and len(shown) == 4
    assert re.match(r"4 trials by cv_\w+_mean", page.locator(".mlops-many .mlops-hint").inner_text())
    assert page.locator(".mlops-many-table th", has_text="max_depth").count() == 1
    assert page.locator("img.mlops-compare-plot").get_attribute("src").startswith("data:image/png;base64,")
    page.close()

def test_the_wheel_alone_gives_a_working_panel_on_a_project_jupyterlab_was_started_on_from_elsewhere(wheel_venv, tmp_path, browser):
    "pip install of the wheel, nothing else: JupyterLab started from another folder on a user's new project shows the panel."
    bin_ = wheel_venv / "bin"
    subprocess.run([bin_ / "mlops-nb", "new", "shop"], cwd=tmp_path, check=True, capture_output=True, env=clean_env())
    project, elsewhere, home = tmp_path / "shop", tmp_path / "elsewhere", tmp_path / "home"
    elsewhere.mkdir()
    listed = subprocess.run([bin_ / "jupyter", "labextension", "list"], capture_output=True, text=True, env=clean_env())
    assert "mlops-nb-lab" in listed.stdout + listed.stderr and "OK" in listed.stdout + listed.stderr
    port, token = free_port(), secrets.token_hex(16)
    env = clean_env(JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                    JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"))
    env["PATH"] = f"{bin_}:{env['PATH']}"
    proc = subprocess.Popen([bin_ / "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={project}"]
                            + (["--allow-root"] if os.getuid() == 0 else []),
                            cwd=elsewhere, env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/api/status?token={token}", 180, proc)
        status, p = api(url, token, "project")
        assert status == 200 and Path(p["root"]) == project.resolve() and p["model_name"] == "shop"
        assert "train" in {s["name"] for s in p["pipelines"]}
        page, hosts = browser.new_page(viewport={"width": 1400, "height": 900}), set()
        page.on("request", lambda r: hosts.add(r.url.split("/")[2].split(":")[0]))
        open_panel(page, url, token)
        assert page.locator(".mlops-field").count() > 5
        assert hosts == {"127.0.0.1"}, hosts  # every script and style came from JupyterLab's own server: no CDN
        # MLflow's UI is proxied only with the `[lab]` extra, which the wheel alone lacks (a test's `make run VENV=` may
        # have added it since, with a project's `mlops-nb[lab,serve]`): without it the panel says how to get it, not a
        # dead link
        has = subprocess.run([bin_ / "python", "-c", "import importlib.util as u; print(u.find_spec('jupyter_server_proxy'))"],
                             capture_output=True, text=True, env=clean_env()).stdout.strip() != "None"
        assert p["mlflow_proxy"] is has
        page.click('.mlops-tab[data-view="runs"]')
        page.locator(".mlops-toolbar .mlops-refresh").wait_for()
        missing, link = page.locator(".mlops-toolbar .mlops-mlflow-missing"), page.locator(".mlops-toolbar .mlops-mlflow-link")
        if has:
            assert link.get_attribute("href").endswith("/mlflow/") and missing.count() == 0
        else:
            assert "pip install 'mlops-nb[lab]'" in missing.inner_text() and link.count() == 0
        page.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM); proc.wait(30)
