"""Fail (with the one command that fixes it) when mlops_nb/ or README.md is out of sync with notebooks/ or a notebook is not clean."""
import copy, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def export_changes() -> list[str]:
    "Files of mlops_nb/ that nbdev-export rewrites."
    lib = ROOT / "mlops_nb"
    before = {p: p.read_bytes() for p in lib.rglob("*.py")}
    subprocess.run([str(BIN / "nbdev-export")], cwd=ROOT, check=True)
    after = {p: p.read_bytes() for p in lib.rglob("*.py")}
    return sorted(str(p.relative_to(ROOT)) for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def unclean_notebooks() -> list[str]:
    "Notebooks that nbdev-clean would change (outputs counts, metadata; tags are kept)."
    from nbdev.clean import _nbdev_clean
    dirty = []
    for nb_path in sorted([*ROOT.glob("notebooks/**/*.ipynb"), *ROOT.glob("pipelines/*.ipynb")]):
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        cleaned = copy.deepcopy(nb)
        _nbdev_clean(cleaned, path=str(nb_path))
        if cleaned != nb: dirty.append(str(nb_path.relative_to(ROOT)))
    return dirty


def readme_drift() -> bool:
    "README.md is not what notebooks/index.ipynb says (make export writes it)."
    from mlops_nb.ops.docs import readme_text
    return (ROOT / "README.md").read_text(encoding="utf-8") != readme_text(ROOT / "notebooks" / "index.ipynb")


def main() -> int:
    problems = []
    changed = export_changes()
    if changed:
        problems.append(f"mlops_nb/ was out of sync with notebooks/ ({', '.join(changed)} regenerated). "
                        "Run `make export` and commit mlops_nb/ (never edit mlops_nb/ by hand).")
    dirty = unclean_notebooks()
    if dirty:
        problems.append(f"notebooks not cleaned: {', '.join(dirty)}. Run `make export` (it runs nbdev-clean, keeping cell tags) and commit.")
    if readme_drift():
        problems.append("README.md differs from notebooks/index.ipynb, its source. Edit the notebook, then run `make export` (it writes README.md) and commit both.")
    for p in problems: print(f"check failed: {p}", file=sys.stderr)
    if not problems: print("check: mlops_nb/ and README.md in sync with notebooks/, notebooks clean")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
