"""The step cache: hits are visible, one parameter re-runs exactly its dependents, re-saved notebooks still hit,
and an interrupted run (Ctrl-C or kill -9) leaves no cache entry and no run stuck RUNNING."""
import json, os, signal, subprocess, time
from pathlib import Path
import pytest
from conftest import MLOPS_NB, clean_env, interruptible, started_by, wait_or_dump

pytestmark = pytest.mark.slow
STEPS = ["ingest", "validate", "train", "evaluate", "register", "gate"]


def steps_of(project, run):
    c = project.client()
    kids = c.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    return {k.data.tags["mlops_nb.step"]: k for k in kids}


def executed(project, run):
    return sorted(n for n, k in steps_of(project, run).items() if k.data.tags.get("mlops_nb.cached") != "true")


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    from conftest import make_project
    project = make_project(tmp_path_factory.mktemp("cache"))
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", check=True)
    return project


def test_unchanged_rerun_is_all_cached_and_visible(cached):
    first = cached.pipeline_runs()[-1]
    r = cached.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", check=True)
    assert r.stdout.count("cached") >= 5 and "every step was cached" in r.stdout and "is recorded in MLflow" in r.stdout
    assert not list((cached.root / "runs" / ".journal").glob("*.json"))  # written into the store before it returned
    second = cached.pipeline_runs()[-1]
    assert second.info.run_id != first.info.run_id and second.info.status == "FINISHED"
    assert second.data.metrics["test_roc_auc"] == first.data.metrics["test_roc_auc"]
    originals = {n: k.info.run_id for n, k in steps_of(cached, first).items()}
    for name, k in steps_of(cached, second).items():
        assert k.data.tags["mlops_nb.cached"] == "true" and k.data.tags["mlops_nb.cached_from"] == originals[name]


@pytest.mark.parametrize("param, reruns", [("slice_by=shift", ["evaluate", "gate", "register"]),
                                           ("model=linear", ["evaluate", "gate", "register", "train"]),
                                           ("test_size=0.3", STEPS)])
def test_one_parameter_reruns_exactly_its_dependents(cached, param, reruns):
    cached.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", "-p", param, check=True)
    assert executed(cached, cached.pipeline_runs()[-1]) == sorted(reruns)


def test_force_one_step_and_force_all(cached):
    cached.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", "--force", "train", check=True)
    assert "train" in executed(cached, cached.pipeline_runs()[-1]) and "ingest" not in executed(cached, cached.pipeline_runs()[-1])
    cached.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", "--force", check=True)
    assert executed(cached, cached.pipeline_runs()[-1]) == sorted(STEPS)


def test_resaving_a_notebook_with_outputs_keeps_the_cache(cached):
    run = cached.pipeline_runs()[-1]
    assert run.data.tags["mlops_nb.run_dir"] == f"runs/{run.info.run_id}"  # relative to the project, recorded once
    assert run.data.tags["mlops_nb.root"] == str(cached.root.resolve())
    executed_nb = cached.root / run.data.tags["mlops_nb.run_dir"] / "evaluate" / "evaluate.ipynb"
    assert any(c.get("outputs") for c in json.loads(executed_nb.read_text())["cells"])
    original = cached.root / "pipelines" / "evaluate.ipynb"
    saved = original.read_text()
    try:
        nb = json.loads(executed_nb.read_text())  # as if run and saved in JupyterLab: outputs, counts, metadata
        nb["cells"] = [c for c in nb["cells"] if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
        assert [c["source"] for c in nb["cells"]] == [c["source"] for c in json.loads(saved)["cells"]]
        original.write_text(json.dumps(nb, indent=2))
        r = cached.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", check=True)
        assert "every step was cached" in r.stdout
    finally:
        original.write_text(saved)


def test_editing_a_local_module_reruns_exactly_the_steps_that_import_it(cached):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    pipelines = cached.root / "pipelines"
    (pipelines / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    nbformat.write(new_notebook(cells=[new_code_cell("from helpers import double\nprint(double(21))")]),
                   pipelines / "uses.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("print(42)")]), pipelines / "other.ipynb")
    (pipelines / "code.yaml").write_text(
        "steps:\n  - {name: uses, notebook: uses.ipynb}\n  - {name: other, notebook: other.ipynb}\n")
    cached.run("run", "pipelines/code.yaml", check=True)
    r = cached.run("run", "pipelines/code.yaml", check=True)
    assert "every step was cached" in r.stdout
    (pipelines / "helpers.py").write_text("def double(x):\n    return x + x\n")
    cached.run("run", "pipelines/code.yaml", check=True)
    cached.run("runs", check=True)
    exp = cached.client().get_experiment_by_name("mlops-nb").experiment_id
    last = cached.client().search_runs([exp], "tags.mlops_nb.pipeline = 'code' and tags.mlops_nb.kind = 'pipeline'",
                                       order_by=["attributes.start_time DESC"])[0]
    assert executed(cached, last) == ["uses"]


def test_cached_run_imports_no_heavy_library(cached):
    import sys
    env = clean_env()
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "from mlops_nb.cli.main import main; main()", "run", "pipelines/train.yaml",
                        "-p", "n_rows=1500"], cwd=cached.root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "every step was cached" in r.stdout, r.stdout + r.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "mlops_nb.runner.pipeline" in imported
    assert not {"mlflow", "pandas", "sklearn", "papermill", "numpy"} & imported


def start(project, *args):
    env = clean_env(MLOPS_NB_KEEP_WARM="0")  # a zygote of its own, which must go with the runner (`wait_gone`)
    return subprocess.Popen([MLOPS_NB, "run", "pipelines/train.yaml", *args], cwd=project.root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=interruptible)


def wait_for_step(project, step, timeout=300):
    "Wait until `step` is executing (its kernel is writing the executed notebook); return the pipeline run id."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hits = list((project.root / "runs").glob(f"*/{step}/{step}.ipynb"))
        if hits: return hits[0].parent.parent.name
        time.sleep(0.05)
    raise AssertionError(f"step {step} did not start within {timeout} s")


def wait_gone(owner: int, timeout=60) -> list[str]:
    "Wait until runner `owner`'s zygote and kernels are gone; return those still there at the timeout."
    deadline = time.monotonic() + timeout
    while True:
        left = started_by(owner)
        if not left or time.monotonic() > deadline: return left
        time.sleep(0.1)


def interrupt_another_thread(pid: int) -> None:
    """Ctrl-C as the kernel may deliver it: to a thread of the process other than the main one (a kernel channel's, a
    step's). Python then only sets a flag that the main thread must wake up to see (CI once hung here for 180 s)."""
    import ctypes, platform
    tgkill = {"x86_64": 234, "aarch64": 131}[platform.machine()]
    def takes_sigint(tid):  # libzmq's threads block every signal: one sent to them stays pending for ever (CI hung so)
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:  # it ended meanwhile
            return False
        return not int(status.split("SigBlk:")[1].split()[0], 16) & (1 << (signal.SIGINT - 1))
    others = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid and takes_sigint(t)]
    assert others, "the runner has no thread but its main one that takes Ctrl-C while a step runs"
    assert ctypes.CDLL(None, use_errno=True).syscall(tgkill, pid, others[-1], signal.SIGINT) == 0, ctypes.get_errno()


def cache_entries(project):
    return {json.loads(p.read_text())["step"] for p in (project.root / "runs" / ".cache").rglob("*.json")}


@pytest.mark.parametrize("how", ["sigint", "sigkill"])
def test_interrupted_run_leaves_no_entry_no_running_run_and_resumes(project, how, reaper):
    p = start(project, "-p", "n_rows=1500", "-p", "n_estimators=100000", "-p", "learning_rate=0.001")  # a train step that only the interrupt ends (minutes on an idle machine)
    reaper.append(p.pid)
    run_id = wait_for_step(project, "train")
    if how == "sigint":
        interrupt_another_thread(p.pid)
    else:
        os.kill(p.pid, signal.SIGKILL)
    code = wait_or_dump(p, 180)  # the runner's own bounds: 60 s for its step threads, then 30 s to end (cli.main)
    assert code == (130 if how == "sigint" else -signal.SIGKILL)
    assert cache_entries(project) == {"ingest", "validate"}  # train never finished: no entry for it
    project.run("runs", check=True)  # a later invocation closes what a killed runner left RUNNING
    run = project.client().get_run(run_id)
    assert run.info.status == "KILLED"
    assert steps_of(project, run)["train"].info.status == "KILLED"
    assert not wait_gone(p.pid)  # the zygote watches the runner and goes with it, and its kernels with it
    project.run("run", "pipelines/train.yaml", "-p", "n_rows=1500", "-p", "n_estimators=20", check=True)
    assert executed(project, project.pipeline_runs()[-1]) == ["evaluate", "gate", "register", "train"]  # resumed after validate


def write_wheel(folder, name: str, version: str):
    "A real wheel of a one-module distribution `name` (its `__version__` is `version`), written by hand: no index needed."
    import base64, hashlib, zipfile
    files = {f"{name}/__init__.py": f"__version__ = {version!r}\n",
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
             f"{name}-{version}.dist-info/top_level.txt": f"{name}\n"}
    digest = lambda text: base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
    record = "".join(f"{p},sha256={digest(t)},{len(t.encode())}\n" for p, t in files.items())
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, t in files.items():
            z.writestr(p, t)
        z.writestr(f"{name}-{version}.dist-info/RECORD", record + f"{name}-{version}.dist-info/RECORD,,\n")
    return path


def test_a_module_named_by_a_parameter_and_an_upgraded_package_rerun_the_step_and_say_why(cached, tmp_path):
    "The cache key follows code named only in a parameter value and the versions of the packages a step imports."
    import nbformat, sys
    from nbformat.v4 import new_code_cell, new_notebook
    pipelines, site = cached.root / "pipelines", tmp_path / "site-packages"  # a folder on the path, as a venv's is
    install = lambda version: subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "uv"), "pip", "install", "-q", "--target", str(site),
         str(write_wheel(tmp_path, "tinydep", version))], check=True, capture_output=True)
    install("1.0")
    (pipelines / "shapes.py").write_text("class Square:\n    side = 2\n")
    params = new_code_cell("estimator: str = 'shapes:Square'  # a class, by name")
    params.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[params, new_code_cell(
        "import importlib, tinydep\nm, _, n = estimator.partition(':')\n"
        "print(getattr(importlib.import_module(m), n).side, tinydep.__version__)")]), pipelines / "fit.ipynb")
    (pipelines / "fit.yaml").write_text("steps:\n  - {name: fit, notebook: fit.ipynb}\n")
    run = lambda *a: cached.run("run", "pipelines/fit.yaml", *a, check=True, env={"PYTHONPATH": str(site)})
    run()
    assert "every step was cached" in run().stdout
    (pipelines / "shapes.py").write_text("class Square:\n    side = 3\n")  # named only in the parameter's value
    assert "fit          runs: project file pipelines/shapes.py changed" in run("--explain-cache").stdout
    r = run()
    assert "fit ran: project file pipelines/shapes.py changed" in r.stdout and "every step was cached" not in r.stdout
    first = cached.pipeline_runs()[-1].info.run_id
    install("2.0")  # another version of a package the step imports
    r = run()
    assert "fit ran: tinydep 1.0 -> 2.0" in " ".join(r.stdout.split()), r.stdout
    (pipelines / "shapes.py").write_text("class Square:\n    side = 4\n")
    r = cached.run("reproduce", first, env={"PYTHONPATH": str(site)})  # the same list, against what was recorded
    out = " ".join(r.stdout.split())
    assert "✗ project code: DIFFERS (changed: pipelines/shapes.py)" in out and "tinydep 1.0 -> 2.0" in out, out
