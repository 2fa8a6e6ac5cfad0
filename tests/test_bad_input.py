"""Every kind of bad input: one clear message, a non-zero exit, and nothing already recorded damaged."""
import json
import pytest
from conftest import download

pytestmark = pytest.mark.slow


def write(project, name, text):
    (project.root / name).write_text(text)
    return name


def snapshot(project):
    "What must survive a failed invocation unchanged: earlier runs' statuses and registered versions."
    return [(r.info.run_id, r.info.status) for r in project.pipeline_runs()], project.versions()


# (id, arguments (a callable of the project), exit code, text the message must contain, does it get as far as a run)
CASES = [
    ("missing file", lambda p: ["-p", "data=no-such.csv"], 2, "file no-such.csv not found", False),
    ("unknown parameter", lambda p: ["-p", "modle=rf"], 2, "unknown parameter 'modle' (did you mean 'model'?)", False),
    ("wrong type", lambda p: ["-p", "n_rows=many"], 2, "parameter 'n_rows' expects int, got 'many'", False),
    ("not a choice", lambda p: ["-p", "model=xgb"], 2, "parameter 'model' must be one of linear, rf, hgb", False),
    ("not KEY=VALUE", lambda p: ["-p", "model"], 2, "is not KEY=VALUE", False),
    ("empty file", lambda p: ["-p", f"data={write(p, 'empty.csv', '')}"], 1, "is empty (0 bytes)", True),
    ("unparsable csv", lambda p: ["-p", f"data={write(p, 'bad.csv', 'a,b' + chr(10) + '1,2' + chr(10) + '1,2,3,4' + chr(10))}"], 1,
     "does not parse as CSV", True),
    ("target absent", lambda p: ["-p", f"data={write(p, 'abc.csv', 'a,b,c' + chr(10) + '1,2,3' + chr(10))}", "-p", "target=label"], 1,
     "target column 'label' not found", True),
    ("single class", lambda p: ["-p", f"data={write(p, 'one.csv', 'x,y' + chr(10) + ''.join(f'{i},1' + chr(10) for i in range(50)))}", "-p", "target=y"], 1,
     "has a single value (1)", True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_run_arguments(trained, case):
    project, _ = trained
    _, args, code, message, recorded = case
    before = snapshot(project)
    r = project.run("run", "pipelines/train.yaml", *args(project))
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == code, out
    assert message in out
    assert "Traceback" not in out
    runs_after, versions_after = snapshot(project)
    assert runs_after[:len(before[0])] == before[0] and versions_after == before[1]
    new = runs_after[len(before[0]):]
    assert [s for _, s in new] == (["FAILED"] if recorded else [])
    if recorded:  # the failing step keeps its executed notebook, with the error in it
        assert "executed notebook:" in out
        nb = out.split("executed notebook: ")[1].split(" ")[0]
        cells = json.load(open(nb))["cells"]
        assert any(o.get("output_type") == "error" for c in cells for o in c.get("outputs", []))


def spec_case(project, text):
    (project.root / "pipelines" / "bad.yaml").write_text(text)
    return project.run("run", "pipelines/bad.yaml")


@pytest.mark.parametrize("text, message", [
    ("name: x\nsteps: [\n", "is not valid YAML"),
    ("steps:\n  - {name: a, notebook: missing.ipynb}\n", "names notebook missing.ipynb, which does not exist"),
    ("steps: 3\n", "must be a mapping with a non-empty 'steps' list"),
    ("steps:\n  - {name: a, notebook: ingest.ipynb, needs: [b]}\n", "needs 'b', which is not a step"),
], ids=["malformed yaml", "missing notebook", "no steps", "unknown need"])
def test_bad_pipeline_spec(project, text, message):
    r = spec_case(project, text)
    assert r.returncode == 2 and message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
    assert project.pipeline_runs() == []


def test_step_notebook_with_a_broken_parameters_cell(project):
    nb = json.loads((project.root / "pipelines" / "ingest.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    cell["source"] = "n_rows: int = (5000\n"
    (project.root / "pipelines" / "broken.ipynb").write_text(json.dumps(nb))
    r = spec_case(project, "steps:\n  - {name: a, notebook: broken.ipynb}\n")
    assert r.returncode == 2 and "the parameters cell of" in r.stderr and "is not valid Python" in " ".join(r.stderr.split())
    assert project.pipeline_runs() == []


def test_validation_failure_stops_dependents_and_keeps_the_report(trained):
    project, _ = trained
    from mlops_nb.ml.data import make_demo_data
    make_demo_data(800, seed=3).drop(columns=["pressure"]).to_csv(project.root / "no_pressure.csv", index=False)
    before = snapshot(project)
    # named explicitly: a data file alone would get a model of its own, named after the file
    r = project.run("run", "pipelines/train.yaml", "-p", "data=no_pressure.csv", "-p", "model_name=assembly-defect")
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 1 and "step 'validate' failed" in out and "1 column(s) missing" in out and "pressure" in out
    assert out.count("allow_schema_change") == 1  # the two ways on, said once
    run = project.pipeline_runs()[-1]
    assert run.info.status == "FAILED" and run.data.tags["mlops_nb.failed_step"] == "validate"
    steps = project.client().search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert {s.data.tags["mlops_nb.step"]: s.info.status for s in steps} == {"ingest": "FINISHED", "validate": "FAILED"}
    validate = next(s for s in steps if s.data.tags["mlops_nb.step"] == "validate")
    report = download(project.client(), validate.info.run_id, "validation.md")
    assert "pressure" in open(report).read()
    assert snapshot(project)[1] == before[1]


def test_parameters_as_papermill_takes_them_none_lists_and_dicts(project):
    "papermill's everyday parameters (its own test notebook's `msg = None`, lists, dicts) run, typed and checked."
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    params = new_code_cell("msg = None\nname: str | None = None  # optional\ncols: list[str] = ['a']  # columns\n"
                           "opts: dict = {}  # options\nout_dir: str = ''")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell("import json, os\nprint(msg)\n"
                         "json.dump([msg, name, cols, opts], open(os.path.join(out_dir, 'got.json'), 'w'))")
    nbformat.write(new_notebook(cells=[params, body]), project.root / "pipelines" / "echo.ipynb")
    (project.root / "pipelines" / "echo.yaml").write_text("steps:\n  - {name: echo, notebook: echo.ipynb}\n")
    got = lambda: json.loads(next((project.root / "runs").glob("*/echo/got.json")).read_text())
    project.run("run", "pipelines/echo.yaml", check=True)  # the defaults, as in JupyterLab
    assert got() == [None, None, ["a"], {}]
    for f in (project.root / "runs").glob("*/echo/got.json"):
        f.unlink()
    project.run("run", "pipelines/echo.yaml", "-p", "msg=hello", "-p", "cols=[x, y]", "-p", "opts={depth: 3}",
                "-p", "name=ann", check=True)
    assert got() == ["hello", "ann", ["x", "y"], {"depth": 3}]
    before = snapshot(project)
    r = project.run("run", "pipelines/echo.yaml", "-p", "opts=[1, 2]")
    assert r.returncode == 2 and "parameter 'opts' expects dict, got '[1, 2]'" in " ".join(r.stderr.split())
    assert snapshot(project) == before


def test_places_resolve_as_people_expect(project, tmp_path):
    """A file default in a step notebook is relative to the notebook (as in JupyterLab), from any folder; outside a
    project, reading commands refuse in one line and make no store; the monitor names the models there are."""
    import nbformat, subprocess, sys
    from nbformat.v4 import new_code_cell, new_notebook
    from conftest import MLOPS_NB, clean_env
    (project.root / "data").mkdir()
    (project.root / "data" / "houses.csv").write_text("area,price\n50,100\n")
    params = new_code_cell("data: str = '../data/houses.csv'  # the table\nout_dir: str = ''")
    params.metadata["tags"] = ["parameters"]
    nbformat.write(new_notebook(cells=[params, new_code_cell(
        "import os, shutil\nshutil.copy(data, os.path.join(out_dir, 'copy.csv'))")]), project.root / "pipelines" / "load.ipynb")
    (project.root / "pipelines" / "load.yaml").write_text(
        "steps:\n  - {name: load, notebook: load.ipynb}\nparams:\n  data: {file: true}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cli = lambda *a, cwd=elsewhere: subprocess.run([MLOPS_NB, *map(str, a)], cwd=cwd, env=clean_env(COLUMNS="200"),
                                                   capture_output=True, text=True, timeout=300)
    r = cli("run", project.root / "pipelines" / "load.yaml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert next((project.root / "runs").glob("*/load/copy.csv")).read_text() == "area,price\n50,100\n"
    for args in (["runs"], ["registry"], ["show", "abc"], ["monitor"]):
        r = cli(*args)
        assert r.returncode == 2 and "is not in an mlops-nb project" in r.stderr and "--project DIR" in r.stderr, args
    r = subprocess.run([sys.executable, "-c", "import mlops_nb; mlops_nb.runs()"], cwd=elsewhere, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 1 and "is not in an mlops-nb project" in r.stderr
    assert sorted(elsewhere.iterdir()) == []  # no store, no folder made where the commands were typed
    assert "load" in cli("--project", project.root, "runs").stdout
    r = cli("monitor", "--data", project.root / "data" / "houses.csv", cwd=project.root)
    assert r.returncode == 2 and "no registered model 'assembly-defect'" in " ".join(r.stderr.split()), r.stderr
    assert "Pass --model NAME" in " ".join(r.stderr.split())
