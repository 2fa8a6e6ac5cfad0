"""Install: what `pip install mlops-nb` brings into a fresh virtualenv, the core alone and with extras, side by side.

Builds the wheel from this checkout once (`pip wheel --no-deps .`), then, in interleaved rounds, makes a fresh venv
for each of these and installs the wheel into it with pip (as a user would; pip's own cache as it is):

- **core**: `pip install mlops_nb-*.whl`: `make run`, the card, the panel, `serve`;
- **core + [lab,serve]**: what the core was before these extras were split off (jupyter-server-proxy for MLflow's UI
  inside JupyterLab; uvloop and httptools under `serve`), and what a project made by `mlops-nb new` installs.

For each it prints the distributions installed, the size of the venv's site-packages on disk (bytecode included)
and the wall time of `pip install` (all the work it started). Nothing is asserted; `--installer uv` uses
`uv pip install` instead.

Measured here (2026-12-08, 2 cores, pip from the machine's package registry, 1 round):

                           distributions  site-packages MB  install s
    core                             200              1270       93.1
    core + [lab,serve]               204              1286      105.0
    the extras add: httptools, jupyter-server-proxy, simpervisor, uvloop

Run: `.venv/bin/python bench/install.py [--rounds 1] [--installer pip|uv]`.
"""
from __future__ import annotations
import argparse, glob, os, re, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VARIANTS = {"core": "", "core + [lab,serve]": "[lab,serve]"}


def size_of(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def install(wheel: Path, extras: str, where: Path, installer: str) -> dict:
    "A fresh venv in `where` with the wheel (and `extras`) installed: distributions, bytes, seconds."
    subprocess.run([sys.executable, "-m", "venv", where], check=True)
    py = where / "bin" / "python"
    if installer == "uv":
        cmd = [BIN / "uv", "pip", "install", "--quiet", "--compile-bytecode", "--python", py, f"{wheel}{extras}"]
    else:
        cmd = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}{extras}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    t = time.perf_counter()
    r = subprocess.run([str(c) for c in cmd], env=env, capture_output=True, text=True)  # waits for all it started
    if r.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{r.stderr[-3000:]}")
    seconds = time.perf_counter() - t
    listed = subprocess.run([py, "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
                            check=True, capture_output=True, text=True).stdout.split()
    site = Path(glob.glob(str(where / "lib" / "python3*" / "site-packages"))[0])
    names = {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower() for line in listed} - {"pip", "setuptools"}
    return {"dists": names, "bytes": size_of(site), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--installer", choices=["pip", "uv"], default="pip")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", d / "dist", REPO], check=True,
                       capture_output=True)
        [wheel] = (d / "dist").glob("mlops_nb-*.whl")
        got = {name: [] for name in VARIANTS}
        for r in range(a.rounds):  # interleaved
            for name, extras in VARIANTS.items():
                where = d / f"venv-{r}-{len(got[name])}-{extras.strip('[]').replace(',', '-') or 'core'}"
                got[name].append(install(wheel, extras, where, a.installer))
                shutil.rmtree(where)
    print(f"{wheel.name}, installed with {a.installer} into fresh venvs; medians of {a.rounds} round(s)")
    print(f"{'':<22} {'distributions':>13} {'site-packages MB':>17} {'install s':>10}")
    for name, rs in got.items():
        print(f"{name:<22} {len(rs[-1]['dists']):>13} {statistics.median(x['bytes'] for x in rs) / 1e6:>17.0f} "
              f"{statistics.median(x['seconds'] for x in rs):>10.1f}")
    core, full = (got[n][-1]["dists"] for n in VARIANTS)
    print(f"the extras add: {', '.join(sorted(full - core))}")


if __name__ == "__main__":
    main()
