"""Fixtures: a throw-away project (its own settings, pipelines, git repo and MLflow store) and a CLI runner."""
import contextlib, os, shutil, subprocess, sys, tempfile
from dataclasses import dataclass
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and other files a reader of a test run looks at; kept by CI
MLOPS_NB = str(Path(sys.executable).parent / "mlops-nb")
# One OpenMP thread per process (scikit-learn's gradient boosting, its predictions, BLAS), as Dask's nanny gives each of
# its workers: the suite runs two workers on two cores, and a process's second OpenMP thread finds no core free. Its
# threads then spin at every barrier until the scheduler moves them: a 2,000-row boosted fit took ~12 s instead of
# ~0.15 s while the suite ran. Every process the tests start inherits it (clean_env and user_env copy os.environ).
from mlops_nb.runner.execute import THREAD_VARIABLES
for _threads in THREAD_VARIABLES:
    os.environ.setdefault(_threads, "1")
# for the tracking servers the tests start themselves, as a team that trains models would run theirs: without MLflow's
# job runner for its GenAI features (seven more processes, each importing MLflow: ~25 s of CPU at every start here)
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@dataclass
class Project:
    root: Path

    @property
    def tracking(self) -> str: return f"sqlite:///{self.root / 'mlflow.db'}"

    def run(self, *args, check=False, timeout=600, env=None) -> subprocess.CompletedProcess:
        "Run `mlops-nb ARGS` in the project, as a user would (with the variables `env` set too)."
        env = clean_env(COLUMNS="160", **(env or {}))
        r = subprocess.run([MLOPS_NB, *map(str, args)], cwd=self.root, env=env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"mlops-nb {' '.join(map(str, args))} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def client(self):
        from mlflow import MlflowClient
        return MlflowClient(self.tracking, registry_uri=self.tracking)

    def pipeline_runs(self):
        c = self.client()
        exp = c.get_experiment_by_name("mlops-nb")
        return [] if exp is None else c.search_runs([exp.experiment_id], "tags.mlops_nb.kind = 'pipeline'", order_by=["attributes.start_time ASC"])

    def versions(self, name="assembly-defect"):
        from mlflow.exceptions import MlflowException
        try: return sorted(int(v.version) for v in self.client().search_model_versions(f"name = '{name}'"))
        except MlflowException: return []


_DOWNLOADS: list[Path] = []  # the folder of this test process's downloads, under pytest's base folder (set once)


def download(client, run_id: str, path: str) -> Path:
    """A run's artifact, downloaded into this test run's own folder: MLflow's default is a new temporary folder that
    nobody removes (the suite checks that it leaves its TMPDIR empty)."""
    import tempfile
    if not _DOWNLOADS:
        _DOWNLOADS.append(_CONFIG[0]._tmp_path_factory.getbasetemp() / "downloads")
        _DOWNLOADS[0].mkdir(exist_ok=True)
    return Path(client.download_artifacts(run_id, path, tempfile.mkdtemp(dir=_DOWNLOADS[0])))


_CONFIG: list = []


def pytest_configure(config):
    _CONFIG.append(config)


def clean_env(**extra: str) -> dict[str, str]:
    "This process's environment without MLflow's or the workbench's settings (as a user's shell has), plus `extra`."
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}, **extra}


def make_project(folder: Path) -> Project:
    "A copy of the project's settings and pipelines in `folder`, committed to a fresh git repository."
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "settings.ini", folder / "settings.ini")
    shutil.copytree(REPO / "pipelines", folder / "pipelines", ignore=shutil.ignore_patterns(".*"))
    git = lambda *a: subprocess.run(["git", *a], cwd=folder, check=True, capture_output=True)
    git("init", "-q"); git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    return Project(folder)


def wait_or_dump(p: subprocess.Popen, timeout: float) -> int:
    """The runner's exit code; if it has not ended in `timeout` s, fail with what each of its threads is waiting for.
    (Waits on the process, not its pipes: its kernels may hold them open after it is gone. Its output is small.)"""
    import signal
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGUSR1)  # every thread's stack, to stderr (cli.main)
        try:
            p.communicate(timeout=10)  # it is stuck: this times out, with the stacks written meanwhile
        except subprocess.TimeoutExpired:
            pass
        p.kill()
        try:  # what it wrote; its kernels may hold the pipe open after it is gone: read what is there, never wait on them
            out, err = p.communicate(timeout=10)
            err = (out or "") + (err or "")
        except subprocess.TimeoutExpired:
            err = "(its stderr is still held open by processes it started)"
        # the main thread's stack first (it is the one that must end the run), then the others, as much as fits
        stacks = sorted(err.split("\n\n"), key=lambda b: "in <module>" not in b)
        raise AssertionError(f"the runner did not end within {timeout} s:\n" + "\n\n".join(stacks)[:6000]) from None


def interruptible() -> None:
    """Popen's preexec_fn: Ctrl-C (SIGINT) reaches the command as at a terminal. A shell starts its background jobs, and
    all they start, with SIGINT ignored (a CI job run with `&` would), and Python then never raises KeyboardInterrupt."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def started_by(runner: int) -> list[str]:
    """The processes runner `runner` started that outlive it by design: its zygote and the kernels forked from it (their
    command line names the runner: `serve(..., owner=PID, ...)`)."""
    return subprocess.run(["pgrep", "-f", f"owner={runner}[,)]"], capture_output=True, text=True).stdout.split()


def kill_left_behind(runner: int) -> None:
    """Kill what runner process `runner` started and left (its zygote, the kernels forked from it): a failing test must
    not leave a kernel training on one of the two cores for the rest of the suite."""
    import signal
    for pid in map(int, started_by(runner)):
        try: os.kill(pid, signal.SIGKILL)
        except ProcessLookupError: pass


@pytest.fixture
def reaper() -> list[int]:
    "Runner pids a test started: at teardown whatever they left behind is killed, whether the test passed or not."
    runners: list[int] = []
    yield runners
    for pid in runners: kill_left_behind(pid)


def zygote_processes() -> list[Path]:
    "The /proc folders of the kernels' zygotes running now, and of the kernels forked from them (same command line)."
    found = []
    for d in Path("/proc").iterdir():
        try:
            if b"mlops_nb.runner.zygote import serve" in (d / "cmdline").read_bytes(): found.append(d)
        except OSError:
            pass
    return found


def in_session(sid: int) -> list[str]:
    "The command lines of the processes in session `sid`: a server started in a session of its own and all it started."
    found = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                found.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            pass
    return found


def pytest_sessionfinish(session):
    """Stop the kernels' zygotes the suite's runs kept warm for later runs (`runner.early`; they would wait 10 minutes):
    nothing the suite started runs on after it. The controller does it once all workers are done."""
    import signal
    if hasattr(session.config, "workerinput"): return
    ours = (f"{REPO}/", f"{session.config._tmp_path_factory.getbasetemp()}/")  # this checkout's venv, the wheel's
    from mlops_nb.runner.zygote import kept_zygotes, stop_kept
    for z in kept_zygotes():  # as `mlops-nb kernels --stop` does: their sockets, locks and logs go too
        if z.get("python", "").startswith(ours):
            stop_kept(z)
    for d in zygote_processes():
        try:
            if (d / "cmdline").read_bytes().split(b"\0")[0].decode().startswith(ours):
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    home = Path(tempfile.gettempdir()) / f"mlops-nb-{os.getuid()}"  # the kept zygotes' folder, in the suite's TMPDIR
    for log in home.glob("zygote-*.log") if os.environ.get("TMPDIR", "").startswith("/tmp/mlops-nb-tests.") else ():
        log.unlink()  # what they printed (warnings): read it in the test that failed, if one did
    with contextlib.suppress(OSError):
        home.rmdir()


def free_port() -> int:
    "A TCP port free on 127.0.0.1 now."
    import socket
    with socket.socket() as s: s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def wait_for_url(url: str, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
    "Poll `url` until it answers 200; fail at once, with its exit code, if `proc` (the server started for it) ended."
    import time, urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process serving {url} exited with {proc.returncode} before it answered")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200: return
        except OSError: time.sleep(0.2)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


def wait_until_up(url: str, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
    "Wait until a scoring server at `url` is healthy (its /health answers 200)."
    wait_for_url(f"{url}/health", timeout, proc)


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> tuple[Project, str]:
    "A project in which the train pipeline ran once on 2,000 demo rows; returns it and the run id."
    project = make_project(tmp_path_factory.mktemp("trained"))
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=2000", check=True)
    run_id = project.pipeline_runs()[-1].info.run_id
    return project, run_id


# `make test` runs the suite on two pytest-xdist workers, a whole module at a time (--dist loadfile: a module's tests
# share its fixtures, and some build on what the one before left), the costliest modules first so both end together
HEAVIEST_FIRST = ("test_team.py", "test_real_data.py", "test_runs_modes.py", "test_monitor.py", "test_upgrade.py", "test_cache.py",
                  "test_lab.py", "test_own_project.py", "test_serving.py", "test_search.py", "test_docs.py", "test_deploy.py")


def pytest_collection_modifyitems(config, items):
    "Modules in `HEAVIEST_FIRST`'s order, then the rest as collected."
    def rank(item) -> int:
        name = item.path.name
        return HEAVIEST_FIRST.index(name) if name in HEAVIEST_FIRST else len(HEAVIEST_FIRST)
    items.sort(key=rank)  # stable: collection order within a module


@pytest.fixture
def project(tmp_path) -> Project:
    return make_project(tmp_path / "project")


CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")  # Debian's Chromium; CI elsewhere may point at its own Chrome
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    "Debian's headless Chromium, driven by Playwright (`make browser` installs it)."
    if not Path(CHROMIUM).exists():
        raise AssertionError(f"{CHROMIUM} not found: the browser tests need Debian's Chromium. Run `make browser` (apt-get install chromium chromium-driver).")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


def clean_checkout(dest: Path) -> Path:
    "The repository's tracked files (as they are in the work tree) copied to `dest`: what a fresh clone holds."
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(src, dest / f)
    return dest


@pytest.fixture(scope="session")
def wheel_venv(tmp_path_factory) -> Path:
    """A fresh virtualenv outside the repository with mlops-nb installed from a wheel built from this checkout: made once
    per test run, by whichever pytest-xdist worker needs it first, while the other waits on the lock."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' folders sit side by side
    where, venv = shared / "wheel", shared / "wheel" / "venv"
    with FileLock(str(shared / "wheel.lock")):
        if not (where / "installed").exists():
            make_wheel_venv(where, venv)
            (where / "installed").touch()
    return venv


def checkout_version() -> str:
    "The version setuptools-scm gives this checkout (a copy of its files has no git to ask)."
    from setuptools_scm import get_version
    return get_version(root=str(REPO), fallback_version="0.0.0+unknown")  # a checkout without its .git: the fallback


def make_wheel_venv(where: Path, venv: Path) -> None:
    """Build the sdist and, from it, the wheel, as `python -m build` does from a clean checkout (`where/src`, whose panel
    is not built: the build backend builds it); make the venv, and install the wheel and its dependencies from the
    package index. `where/build.log` keeps what the build printed (tests/test_package.py reads it)."""
    shutil.rmtree(where, ignore_errors=True)
    src = clean_checkout(where / "src")
    r = subprocess.run([sys.executable, "-m", "build", "-o", str(where / "dist"), str(src)], capture_output=True,
                       text=True, env=clean_env(SETUPTOOLS_SCM_PRETEND_VERSION=checkout_version()))
    (where / "build.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, f"python -m build failed on a clean checkout:\n{(r.stdout + r.stderr)[-3000:]}"
    wheel = next((where / "dist").glob("mlops_nb-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    # uv, not pip: the same wheel and the same dependencies from the same index, written in ~1/3 of pip's time (pip
    # took ~90 s here); bytecode is compiled at install, as pip does
    uv = Path(sys.executable).parent / "uv"
    r = subprocess.run([str(uv), "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv / "bin" / "python"),
                        f"{wheel}[onnx]"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stderr[-2000:]
    # what the wheel alone brings, noted before any test installs more into this shared venv (a project's `make run
    # VENV=...` adds its `mlops-nb[lab,serve]`): MLflow's proxy for JupyterLab, and what `serve` says without `[serve]`
    r = subprocess.run([str(venv / "bin" / "python"), "-c", ALONE], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stderr[-2000:]
    (where / "alone.json").write_text(r.stdout)


ALONE = """import importlib.util, json
from mlops_nb.cli.serving import _slow_server_note
print(json.dumps({"proxy": importlib.util.find_spec("jupyter_server_proxy") is not None, "note": _slow_server_note()}))
"""


def user_env(**extra: str) -> dict[str, str]:
    "A user's shell: no PYTHONPATH, no MLflow or workbench variables, nothing of this test run's virtualenv."
    keep = {k: v for k, v in clean_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    keep["PATH"] = ":".join(p for p in keep.get("PATH", "").split(":") if not p.startswith(str(REPO)))
    return {**keep, **extra}


def venv_from(requirements: Path, folder: Path) -> Path:
    """A fresh virtualenv in `folder` with nothing but what `requirements` lists (and what that requires), as a user
    who gets a model or a bundle would make it; uv, from the index (its cache makes it seconds)."""
    uv = Path(sys.executable).parent / "uv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([str(uv), "venv", "--quiet", "--python", base, str(folder)], check=True, capture_output=True,
                   env=user_env())
    r = subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(folder / "bin" / "python"), "-r",
                        str(requirements)], capture_output=True, text=True, env=user_env())
    assert r.returncode == 0, f"installing {requirements} failed:\n{r.stderr[-3000:]}"
    return folder
