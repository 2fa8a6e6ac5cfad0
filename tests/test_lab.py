"""JupyterLab, as a person uses it: the train pipeline's first step notebook opened in real JupyterLab (headless
Chromium driven by Playwright), every cell run with its defaults from the Run menu, and none failing."""
import json, os, secrets, signal, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest
from conftest import clean_env, free_port, make_project, wait_for_url

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
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
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
        nb = json.loads(nb_path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if all(c.get("execution_count") for c in code): break
        time.sleep(0.3)
    assert all(c.get("execution_count") for c in code), "the notebook was not saved with every cell run"
    failed = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not failed, f"{first}: {failed[0]['ename']}: {failed[0]['evalue']}"
    assert (project.root / "mlflow.db").exists()  # it recorded into the project's own store, as headless runs do
    page.close()
