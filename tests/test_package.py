"""The package as a user builds it from source: `python -m build` (the sdist, then the wheel from it) and `pip wheel .`
on a clean checkout build the JupyterLab panel themselves (buildsys/backend.py), without Node one line says so, and
the sdist builds the same wheel as the checkout. The build itself is made once, by the `wheel_venv` fixture."""
import hashlib, json, os, shutil, subprocess, sys, tarfile, tempfile, zipfile
from pathlib import Path

import pytest
from conftest import checkout_version, clean_checkout, clean_env

pytestmark = pytest.mark.slow
PANEL = "share/jupyter/labextensions/mlops-nb-lab"


def contents(wheel: Path) -> dict[str, str]:
    "Each file of a wheel and the hash of its bytes (RECORD aside: it holds the same hashes)."
    with zipfile.ZipFile(wheel) as z:
        return {n: hashlib.sha256(z.read(n)).hexdigest() for n in z.namelist() if not n.endswith("/RECORD")}


def test_a_clean_checkout_builds_the_panel_into_an_sdist_and_a_wheel_that_twine_accepts(wheel_venv):
    where = wheel_venv.parent
    log = (where / "build.log").read_text()
    assert "mlops-nb: building the JupyterLab panel" in log, log[-2000:]  # the checkout had no built panel
    sdist, wheel = next((where / "dist").glob("*.tar.gz")), next((where / "dist").glob("*.whl"))
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert {"lab/labextension/package.json", "lab/src/index.js", "buildsys/backend.py"} <= names
    files = contents(wheel)
    data = {n.split(".data/data/", 1)[1] for n in files if ".data/data/" in n}
    assert f"{PANEL}/package.json" in data and any(n.startswith(f"{PANEL}/static/remoteEntry.") for n in data), data
    assert "etc/jupyter/jupyter_server_config.d/mlops_nb.json" in data
    twine = Path(sys.executable).parent / "twine"
    r = subprocess.run([str(twine), "check", "--strict", str(sdist), str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.count("PASSED") == 2, r.stdout + r.stderr
    # the installed panel is JupyterLab's: enabled, and its server extension with it
    r = subprocess.run([str(wheel_venv / "bin" / "jupyter"), "labextension", "list"], capture_output=True, text=True)
    assert "mlops-nb-lab" in r.stdout + r.stderr and "enabled" in r.stdout + r.stderr, r.stdout + r.stderr


def test_the_checkout_builds_the_sdists_wheel_without_building_the_panel_again(wheel_venv, tmp_path):
    where = wheel_venv.parent
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "-o", str(tmp_path), str(where / "src")],
                       capture_output=True, text=True, env=clean_env(SETUPTOOLS_SCM_PRETEND_VERSION=checkout_version()))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "building the JupyterLab panel" not in r.stdout + r.stderr  # current: its sources' hash is recorded
    assert "jupyter-builder" not in r.stdout  # ... and the build environment did not even install the builder
    ours, sdists = contents(next(tmp_path.glob("*.whl"))), contents(next((where / "dist").glob("*.whl")))
    assert ours == sdists, sorted(set(ours.items()) ^ set(sdists.items()))[:10]


def test_pip_installs_from_a_git_url_building_the_panel(tmp_path):
    "`pip install git+URL`: pip clones the commit (no built panel in git) and the build backend builds the panel."
    from conftest import REPO
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    r = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-v", "--no-deps",
                        f"git+file://{REPO}@{head}"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "mlops-nb: building the JupyterLab panel" in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    panel = venv / PANEL
    assert (panel / "package.json").is_file() and list((panel / "static").glob("remoteEntry.*.js")), panel
    [module] = (venv / "lib").glob("python3*/site-packages/mlops_nb/__init__.py")
    installed = subprocess.run(["git", "show", f"{head}:mlops_nb/runner/kernels.py"], cwd=REPO, capture_output=True,
                               text=True, check=True).stdout
    assert (module.parent / "runner" / "kernels.py").read_text() == installed  # the commit named, not the work tree


def test_without_node_the_build_says_what_is_missing_in_one_line(tmp_path):
    src = clean_checkout(tmp_path / "src")  # no built panel: it must be built, and there is no Node to build it
    no_node = tmp_path / "bin"
    no_node.mkdir()
    os.symlink(shutil.which("git"), no_node / "git")
    env = clean_env(PATH=f"{Path(sys.executable).parent}:{no_node}", SETUPTOOLS_SCM_PRETEND_VERSION=checkout_version())
    assert shutil.which("node", path=env["PATH"]) is None
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                       capture_output=True, text=True, env=env)
    assert r.returncode != 0
    lines = [x for x in (r.stdout + r.stderr).splitlines() if "needs Node.js >= 18, which is not on PATH" in x]
    assert len(lines) == 1 and "install it" in lines[0].lower(), (r.stdout + r.stderr)[-3000:]
    assert not list((tmp_path / "dist").glob("*.whl"))


def test_a_project_made_where_mlops_nb_came_from_a_wheel_sets_itself_up_from_that_wheel(wheel_venv, tmp_path):
    "`mlops-nb new` after a wheel install: the project's `make run` installs that wheel, not the index's mlops-nb."
    from conftest import user_env
    proj, wheel = tmp_path / "churn", next((wheel_venv.parent / "dist").glob("*.whl"))
    subprocess.run([str(wheel_venv / "bin" / "mlops-nb"), "new", str(proj)], check=True, capture_output=True,
                   cwd=tmp_path, env=user_env())
    assert f"MLOPS_NB ?= {wheel}" in (proj / "Makefile").read_text()
    venv, uv = proj / ".venv", Path(sys.executable).parent / "uv"  # uv: its cache holds what the wheel's venv got
    own = Path(tempfile.mkdtemp(prefix="uv-"))  # uv leaves its build lock (uv-setuptools-*.lock) in the temp folder
    try:
        r = subprocess.run(["make", "setup", f"PIP={uv} pip"], cwd=proj, capture_output=True, text=True,
                           env=user_env(UV_PYTHON=str(venv / "bin" / "python"), TMPDIR=str(own)))
        assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    finally:
        shutil.rmtree(own)
    r = subprocess.run(["make", "run", "ARGS=-p n_rows=1500"], cwd=proj, capture_output=True, text=True, env=user_env())
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    version = subprocess.run([str(venv / "bin" / "mlops-nb"), "--version"], capture_output=True, text=True).stdout
    assert version.startswith(f"mlops-nb {wheel.name.split('-')[1]} "), version
    assert "register" in r.stdout + r.stderr and (proj / "mlflow.db").is_file()
    # the project asks for mlops-nb[lab,serve]: MLflow's UI in its JupyterLab, and the fast server; the wheel alone
    # had neither, and `serve` said what it misses and the extra that brings it (noted as the wheel's venv was made)
    from conftest import ALONE
    got = subprocess.run([str(venv / "bin" / "python"), "-c", ALONE], capture_output=True, text=True, env=user_env())
    assert json.loads(got.stdout) == {"proxy": True, "note": ""}, got.stdout + got.stderr
    alone = json.loads((wheel_venv.parent / "alone.json").read_text())
    assert alone["proxy"] is False and "pip install 'mlops-nb[serve]'" in alone["note"], alone
    # the core has no Kubernetes schemas (~110 MB): the command that needs them names its extra, and writes nothing
    k8s = subprocess.run([str(venv / "bin" / "mlops-nb"), "deploy", "k8s", "k8s"], cwd=proj, capture_output=True,
                         text=True, env=user_env())
    assert k8s.returncode != 0 and "pip install 'mlops-nb[deploy]'" in k8s.stderr, k8s.stdout + k8s.stderr
    assert len(k8s.stderr.strip().splitlines()) <= 2 and not (proj / "k8s").exists(), k8s.stderr
