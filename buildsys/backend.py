"""mlops-nb's build backend: setuptools', which first builds the JupyterLab panel when its built assets are not current.

`pip install .`, `pip wheel .`, `python -m build` and `pip install git+URL` then work from a clean checkout, as they do
for JupyterLab extensions made with hatch-jupyter-builder, whose contract this keeps (for setuptools):

- the built panel (lab/labextension) is current when it records the hash of the sources it was built from
  (lab/package.json, lab/yarn.lock, lab/src, lab/style): then nothing is built, and Node is not needed;
- otherwise it is built with jupyter-builder's `jlpm` (the packages pinned by lab/yarn.lock, from the npm registry)
  and `jupyter-builder build`; the build environment gets jupyter-builder only then (`get_requires_for_build_*`);
- without Node.js, one line says what is missing and how to get it.

The sdist carries the built panel (MANIFEST.in), so a wheel built from it needs no Node, and is the same wheel.
`make panel` builds through the same function: `python buildsys/backend.py`.
"""

import hashlib, os, shutil, subprocess, sys
from pathlib import Path

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401 (the hooks this backend passes through unchanged)
    build_editable,
    get_requires_for_build_editable,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

LAB = Path(__file__).resolve().parent.parent / "lab"
BUILT = LAB / "labextension"
STAMP = BUILT / "built-from.sha256"  # not installed: only package.json and static/ are (pyproject's data-files)
NODE_AT_LEAST = 18
BUILDER = "jupyter-builder>=1.2"


def sources() -> list[Path]:
    "The files the panel is built from."
    found = [LAB / "package.json", LAB / "yarn.lock", *(LAB / "src").rglob("*.js"), *(LAB / "style").rglob("*.css")]
    return sorted(p for p in found if p.is_file())


def sources_hash() -> str:
    h = hashlib.sha256()
    for p in sources():
        h.update(p.relative_to(LAB).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def current() -> bool:
    "The built panel is there, and was built from the sources as they are (or the sources are not here to build)."
    if not (BUILT / "package.json").is_file():
        return False
    if not (LAB / "package.json").is_file():
        return True  # built assets without their sources: nothing to build them from
    return STAMP.is_file() and STAMP.read_text().strip() == sources_hash()


def _node_or_exit() -> str:
    node = shutil.which("node") or shutil.which("nodejs")
    why = "is not on PATH"
    if node:
        out = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()  # v20.11.1
        major = int(out.lstrip("v").split(".")[0]) if out.lstrip("v")[:1].isdigit() else 0
        if major >= NODE_AT_LEAST:
            return node
        why = f"is {out or 'of an unknown version'} at {node}"
    raise SystemExit(
        f"mlops-nb: building its JupyterLab panel (lab/) needs Node.js >= {NODE_AT_LEAST}, which {why}. Install it "
        "(apt install nodejs, conda install -c conda-forge nodejs, or from nodejs.org) and build again; or install "
        "mlops-nb from a wheel or an sdist, which carry the built panel."
    )


def build_panel(log=sys.stderr) -> bool:
    "Build lab/ into lab/labextension unless it is current; True if it built."
    if current():
        return False
    _node_or_exit()
    print("mlops-nb: building the JupyterLab panel (lab/ -> lab/labextension)", file=log, flush=True)
    run = "import sys; from jupyter_builder.{0} import main; sys.argv[0] = '{1}'; sys.exit(main())"
    jlpm = [sys.executable, "-c", run.format("jlpm", "jlpm")]
    builder = [sys.executable, "-c", run.format("main", "jupyter-builder")]
    for cmd in ([*jlpm, "install", "--immutable", "--silent"], [*builder, "build", str(LAB)]):
        r = subprocess.run(cmd, cwd=LAB, stdout=log, stderr=log, env={**os.environ, "YARN_ENABLE_PROGRESS_BARS": "0"})
        if r.returncode != 0:
            what = " ".join(cmd[3:])
            raise SystemExit(f"mlops-nb: building the JupyterLab panel failed ({what}: exit {r.returncode})")
    STAMP.write_text(sources_hash() + "\n")
    return True


def _needs_builder() -> list[str]:
    return [] if current() else [BUILDER]


def get_requires_for_build_wheel(config_settings=None):
    return [*_setuptools.get_requires_for_build_wheel(config_settings), *_needs_builder()]


def get_requires_for_build_sdist(config_settings=None):
    return [*_setuptools.get_requires_for_build_sdist(config_settings), *_needs_builder()]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    build_panel()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    build_panel()
    return _setuptools.build_sdist(sdist_directory, config_settings)


if __name__ == "__main__":  # make panel
    print("built" if build_panel(sys.stdout) else "current: nothing to build")
