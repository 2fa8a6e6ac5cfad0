"""Fail when a library notebook leaves nbdev's rhythm: a notebook of several definition cells whose examples all come
after the last definition, or a code cell over 45 lines (the aim is ~40). Names each one; `make lint` runs it."""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 45


def kinds(nb: dict) -> tuple[list[str], list[tuple[int, int]]]:
    "'E' per definition cell, 'T' per example cell, in order; and (cell number, lines) of the cells over the limit."
    out, long = [], []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        s = "".join(c["source"])
        if re.search(r"^#\|\s*default_exp", s, re.M):
            continue
        if len(s.splitlines()) > LIMIT:
            long.append((i, len(s.splitlines())))
        if re.search(r"^#\|\s*export", s, re.M):
            body = ast.parse(re.sub(r"^#\|.*$", "", s, flags=re.M)).body
            if not all(isinstance(x, (ast.Import, ast.ImportFrom)) for x in body):
                out.append("E")
        elif s.strip() and not re.search(r"^#\|\s*hide", s, re.M):
            out.append("T")
    return out, long


def main() -> int:
    problems = []
    for path in sorted((ROOT / "notebooks").glob("*/*.ipynb")):
        k, long = kinds(json.loads(path.read_text()))
        name = path.relative_to(ROOT)
        if k.count("E") > 1 and "T" not in k[: max(i for i, x in enumerate(k) if x == "E")]:
            problems.append(f"{name}: every example comes after the last definition; put one after each definition")
        problems += [f"{name}: cell {i} has {n} lines (at most {LIMIT}); split it" for i, n in long]
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
