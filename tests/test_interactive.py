"""A step notebook run the way JupyterLab runs it: defaults only, no runner, in a fresh project; the workbench from
inside a notebook: `%load_ext mlops_nb` and `%mlops` in a real kernel."""
import json, os, shutil, subprocess, sys
import pytest
from conftest import clean_env

pytestmark = pytest.mark.slow


def test_step_notebook_runs_top_to_bottom_with_its_defaults(project):
    shutil.move(project.root / "pipelines", project.root / "flows")  # any folder: the notebook finds its spec beside it
    nb = project.root / "flows" / "evaluate.ipynb"
    out = project.root / "executed.ipynb"
    env = clean_env()
    r = subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", "--cwd", str(nb.parent), str(nb), str(out)],
                       cwd=project.root, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    cells = json.loads(out.read_text())["cells"]
    assert not [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    home = project.root / "runs" / "interactive"
    for step in ("ingest", "validate", "train", "evaluate"):  # evaluate ran its missing upstream steps first
        assert (home / step / "outputs.json").is_file(), step
    assert json.loads((home / "evaluate" / "outputs.json").read_text())["metrics"]["roc_auc"] > 0.8
    runs = project.client().search_runs([project.client().get_experiment_by_name("mlops-nb").experiment_id], "tags.mlops_nb.mode = 'interactive'")
    assert sorted(r.data.tags["mlops_nb.step"] for r in runs) == ["evaluate", "ingest", "train", "validate"]
    assert all(r.info.status == "FINISHED" for r in runs)


def kernel_session(cwd):
    "A real IPython kernel in `cwd`, and a function that runs code in it and returns what it showed."
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(cwd), env=clean_env())

    def run(code: str, timeout: float = 600) -> list[tuple[str, str]]:
        import queue, time
        msg_id, out, deadline = kc.execute(code), [], time.monotonic() + timeout
        while True:
            try:
                m = kc.get_iopub_msg(timeout=1)
            except queue.Empty:  # a quiet kernel: still alive, and still in time?
                assert km.is_alive(), f"the kernel died while running {code!r}; it showed: {out}"
                assert time.monotonic() < deadline, f"{code!r} did not finish in {timeout} s; it showed: {out}"
                continue
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            kind, c = m["msg_type"], m["content"]
            if kind == "stream":
                out.append(("text", c["text"]))
            elif kind in ("execute_result", "display_data", "update_display_data"):
                out.append(("html" if "text/html" in c["data"] else "text", c["data"].get("text/html") or c["data"].get("text/plain", "")))
            elif kind == "error":
                out.append(("error", f"{c['ename']}: {c['evalue']}"))
            elif kind == "status" and c["execution_state"] == "idle":
                return out
    return km, run


def test_magics_in_a_real_kernel_run_list_and_show_with_warm_kernels(project):
    km, run = kernel_session(project.root)
    try:
        assert run("%load_ext mlops_nb") == []
        shown = run("r = %mlops run pipelines/train.yaml -p n_rows=800\nprint(r.status, r.run_id)")
        text = "".join(v for k, v in shown if k == "text")
        assert not [v for k, v in shown if k == "error"], shown
        assert "Kernel died" not in text  # warm kernels work from inside a kernel: no step retried cold
        status, run_id = text.strip().splitlines()[-1].split()
        assert status == "FINISHED" and project.pipeline_runs()[-1].info.run_id == run_id
        board = [v for k, v in shown if k == "html" and "<table>" in v][-1]
        assert board.count("done") == 6 and f"#/experiments/" in board  # every step, each with a link to its run
        listed = run("%mlops runs")
        assert run_id in "".join(v for _, v in listed)
        one = run(f"%mlops show {run_id}")
        assert any(k == "html" and run_id in v and "gate" in v for k, v in one)
        bad = run("%mlops nonsense")
        assert bad and bad[0][0] == "text" and bad[0][1].startswith("error: %mlops nonsense: unknown")
    finally:
        km.shutdown_kernel(now=True)
