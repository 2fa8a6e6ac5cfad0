"""`mlops-nb diff`: what changed between two runs, from a real MLflow store, with nbdime's diffs of the executed
notebooks; the offline pages open in a real browser."""
import subprocess
import pytest
from conftest import make_project

pytestmark = pytest.mark.slow


def test_two_runs_that_differ_in_one_parameter_differ_in_it_its_results_and_the_steps_after_it_and_compare_in_a_plot(project, tmp_path, browser):
    from mlops_nb.runner.diff import compare_runs, run_diff
    project.run("run", "pipelines/train.yaml", "--sweep", "n_estimators=20,60", "-p", "n_rows=1500", check=True)
    members = {r.data.params["n_estimators"]: r for r in project.pipeline_runs()}  # the sweep's two pipeline runs
    a, b = members["20"].info.run_id, members["60"].info.run_id
    later = max(members.values(), key=lambda r: r.info.start_time).info.run_id
    d = run_diff(project.client(), a, b, project.root)
    assert d.params == [("n_estimators", "20", "60")]  # and no other
    assert "test_roc_auc" in {m[0] for m in d.metrics} and not d.code, (d.metrics, d.code)
    assert d.changed_steps == ["train", "evaluate", "register", "gate"], [(s.step, s.status) for s in d.steps]
    taken = {s.step: s.status for s in d.steps if s.step in ("ingest", "validate")}  # the step cache's: not re-run
    assert all(v.startswith("same outputs, taken from run ") for v in taken.values()), taken
    train = next(s for s in d.steps if s.step == "train")
    assert train.change.sources == 1  # the injected parameters; the run's own folder and ids do not count

    out = tmp_path / "pages"
    r = project.run("diff", a, b, "--html", out, check=True)
    assert "n_estimators" in r.stdout and "test_roc_auc" in r.stdout and "project code: same" in r.stdout, r.stdout
    other = a if later == b else b
    logged = {f.path for f in project.client().list_artifacts(later, f"diff/vs-{other}")}
    assert f"diff/vs-{other}/index.html" in logged and f"diff/vs-{other}/train.html" in logged, logged
    # the sweep's members compared: its id stands for them; only the parameter that varies is shown, with the metric
    sweep = project.client().get_run(members["20"].data.tags["mlops_nb.sweep"]).info.run_id
    table, metric, goal = compare_runs(project.client(), [sweep])
    assert list(table.columns) == ["run_id", "n_estimators", "test_roc_auc"] and sorted(table["n_estimators"]) == [20, 60]
    r = project.run("runs", "--compare", sweep, "--plot", tmp_path / "compare.png", check=True)
    assert "2 runs by test_roc_auc (higher is better)" in r.stdout and (tmp_path / "compare.png").stat().st_size > 5000
    # a run that failed before it had a metric: in the table, out of the figure, whatever the order of the ids
    assert project.run("run", "pipelines/train.yaml", "-p", "target=no_such_column").returncode != 0
    failed = project.pipeline_runs()[-1].info.run_id
    r = project.run("runs", "--compare", f"{failed},{a},{b}", "--plot", tmp_path / "three.png", check=True)
    assert "3 runs by test_roc_auc" in r.stdout and failed[:8] in r.stdout and (tmp_path / "three.png").is_file()
    page = browser.new_page()
    try:
        page.goto((out / "index.html").as_uri())
        page.click("a[href='train.html']")  # the index links each changed step's page
        # nbdime's app renders the diff, with no server: the changed line of the injected parameters, on each side
        shown = "(document.getElementById('nbdime-root')?.innerText ?? '')"
        page.wait_for_function(f"{shown}.includes('n_estimators = 60')", timeout=60_000)
        assert "n_estimators = 20" in page.evaluate(shown) and page.locator(".jp-Cell-diff").count() >= 2
    finally:
        page.close()


def test_an_edited_project_module_is_a_code_change_with_its_unified_diff(tmp_path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    from mlops_nb.runner.diff import run_diff
    project = make_project(tmp_path / "p")
    step = new_code_cell("import helper\nprint(helper.VALUE)")
    nbformat.write(new_notebook(cells=[step]), project.root / "pipelines" / "look.ipynb")
    (project.root / "pipelines" / "look.yaml").write_text("name: look\nsteps:\n  - {name: look, notebook: look.ipynb}\n")
    (project.root / "pipelines" / "helper.py").write_text("VALUE = 'a'\n")
    git = lambda *a: subprocess.run(["git", *a], cwd=project.root, check=True, capture_output=True)
    git("add", "-A"); git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "the look step")
    project.run("run", "pipelines/look.yaml", check=True)
    (project.root / "pipelines" / "helper.py").write_text("VALUE = 'b'\n")  # edited, not committed
    project.run("run", "pipelines/look.yaml", check=True)  # the step's code changed: it runs again
    a, b = (r.info.run_id for r in project.pipeline_runs()[-2:])
    d = run_diff(project.client(), a, b, project.root)
    assert [f for f, _ in d.code] == ["pipelines/helper.py"], d.code
    assert "-VALUE = 'a'" in d.code[0][1] and "+VALUE = 'b'" in d.code[0][1], d.code[0][1]
    assert not d.params and d.changed_steps == ["look"]
    r = project.run("diff", a, b, check=True)
    assert "project code changed: pipelines/helper.py" in r.stdout and "+VALUE = 'b'" in r.stdout, r.stdout
    r = project.run("diff", a, "f" * 32)  # a run id that names no run: one line naming it
    assert r.returncode != 0 and "f" * 32 in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2, r.stderr
