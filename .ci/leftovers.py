"""What a test run left behind: files in its own TMPDIR (besides pytest's base folder for tmp_path) and processes
still running with that TMPDIR in their environment (every process the suite started inherits it). Prints them,
stops the processes, and exits 1 if there was any: `make test` fails on a leak instead of filling /tmp.

usage: python .ci/leftovers.py [--warn] TMPDIR  (--warn: report what was left, stop the processes, exit 0)"""
import getpass, os, signal, sys
from pathlib import Path


def processes_with(tmp: str) -> dict[int, str]:
    "This user's processes whose environment has TMPDIR=`tmp`, but this one and its ancestors (make, the shell)."
    mine, ancestors, pid = os.getuid(), set(), os.getpid()
    while pid > 1:
        ancestors.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found, marker = {}, f"TMPDIR={tmp}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in ancestors:
            continue
        try:
            if d.stat().st_uid == mine and marker in (d / "environ").read_bytes().split(b"\0"):
                found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
        except OSError:
            pass
    return found


def describe(path: Path) -> str:
    "A leftover, and for a folder what it holds (a hint of who made it)."
    inside = sorted(str(p.relative_to(path)) for p in path.rglob("*"))[:6] if path.is_dir() else []
    return f"{path.name}" + (f" ({', '.join(inside)})" if inside else "")


# Files a third party writes into any TMPDIR it runs under, named here with the evidence; not a leak of the suite's:
# onnxruntime's native library (1.32) writes `.ses` (51 bytes, one file, rewritten) when it is imported:
# `TMPDIR=$(mktemp -d) python -c "import onnxruntime"` leaves it. Serving an ONNX bundle imports it.
NOT_OURS = {".ses"}


def main(tmp: str, strict: bool = True) -> int:
    files = sorted(p for p in Path(tmp).iterdir() if p.name not in {f"pytest-of-{getpass.getuser()}", *NOT_OURS})
    procs = processes_with(tmp)
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if files:
        print(f"the test run left {len(files)} file(s) in its TMPDIR {tmp}:", *map(describe, files[:50]), sep="\n  ")
    if procs:
        print(f"the test run left {len(procs)} process(es) running (stopped now):",
              *(f"{pid}: {cmd}" for pid, cmd in procs.items()), sep="\n  ")
    if not files and not procs:
        print("the test run left nothing behind: no file in its TMPDIR, no process")
    return 1 if strict and (files or procs) else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[-1], strict="--warn" not in args))
