"""Independent steps run at the same time, up to --workers; a step waits for all it needs."""
import json, os, subprocess
import nbformat
import pytest
from conftest import MLOPS_NB, clean_env

pytestmark = pytest.mark.slow

STEP = '''import time, json, os
from pathlib import Path
from mlops_nb.runner.step import StepContext
ctx = StepContext.open({name!r}, out_dir=out_dir, upstream=upstream, mlflow_run_id=mlflow_run_id)
start = time.time()
meeting = Path(ctx.out_dir).parent / "meeting"
meeting.mkdir(exist_ok=True)
(meeting / {name!r}).touch()
peer = {{"a": "b", "b": "a"}}.get({name!r})  # a and b wait for each other (at most `seconds`): only true parallelism meets
deadline = time.monotonic() + seconds
while peer and not (meeting / peer).exists() and time.monotonic() < deadline:
    time.sleep(0.05)
end = time.time()
import sklearn.ensemble  # its OpenMP runtime, as a step that trains a boosted model loads it
from threadpoolctl import threadpool_info
omp = sorted({{i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"}})
ctx.finish(start=start, end=end, met=bool(peer and (meeting / peer).exists()), omp=omp)'''


def diamond(project):
    "a and b are independent (each waits up to `seconds` for the other to start); c needs both."
    for name in "abc":
        cells = [nbformat.v4.new_code_cell('seconds: float = 2.0  # how long a step waits for its peer at most\nout_dir: str = ""  # set by the runner\n'
                                           'upstream: str = ""  # set by the runner\nmlflow_run_id: str = ""  # set by the runner'),
                 nbformat.v4.new_code_cell(STEP.format(name=name))]
        cells[0].metadata["tags"] = ["parameters"]
        nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
        nbformat.write(nb, project.root / "pipelines" / f"{name}.ipynb")
    (project.root / "pipelines" / "diamond.yaml").write_text(
        "name: diamond\nsteps:\n  - {name: a, notebook: a.ipynb}\n  - {name: b, notebook: b.ipynb}\n  - {name: c, notebook: c.ipynb, needs: [a, b]}\n")


def outputs(project) -> dict:
    run = project.pipeline_runs()[-1]
    return {step: json.loads((project.root / "runs" / run.info.run_id / step / "outputs.json").read_text()) for step in "abc"}


@pytest.mark.parametrize("workers, overlap, wait", [(2, True, 300), (1, False, 2)])
def test_independent_steps_overlap_only_with_enough_workers_and_share_the_cores(project, workers, overlap, wait):
    diamond(project)  # with two workers a and b meet however busy the machine; with one, a waits in vain and ends
    env = {k: v for k, v in clean_env(COLUMNS="160").items() if not k.endswith("_NUM_THREADS")}  # as a user's shell
    r = subprocess.run([MLOPS_NB, "run", "pipelines/diamond.yaml", "--workers", str(workers), "--no-cache", "-p",
                        f"seconds={wait}"], cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    o = outputs(project)
    (a, b, c) = ((o[s]["start"], o[s]["end"]) for s in "abc")
    assert (a[0] < b[1] and b[0] < a[1]) == overlap  # a and b ran at the same time iff two workers
    assert c[0] >= max(a[1], b[1])  # c started only after both it needs had finished
    # the kernels that may run together share the cores out (each its OpenMP threads); one at a time, OpenMP's own
    cores = os.cpu_count()
    assert o["a"]["omp"] == o["b"]["omp"] == [max(1, cores // 2) if workers == 2 else cores]
