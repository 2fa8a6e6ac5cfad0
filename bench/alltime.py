"""Timing that counts all the work a command started, detached processes included (shared by the benchmarks).

`become_subreaper()` makes this process the subreaper of everything it starts (Linux `PR_SET_CHILD_SUBREAPER`), so
a process the command detaches (rendering, a journal flush, a daemon) is reparented to us and `timed` waits for it:
"back" is when the command returned, "done" when its last descendant exited, "cpu" the user+system time of all of
them, "peak_mb" the command process's own peak resident memory.
"""
import ctypes, os, resource, subprocess, sys, tempfile, time
from pathlib import Path


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: this benchmark needs Linux")


def timed(cmd: list, cwd: Path, env: dict, deadline: float = 300) -> dict:
    "Run `cmd`; wait for it and every process it started (we are their subreaper); wall, CPU and peak memory."
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(p.pid, 0)
    back = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    stray = 0
    while time.perf_counter() - t0 < deadline:  # descendants left running, reparented to us
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.005)
        else:
            stray += 1
    done = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        log.seek(0)
        sys.exit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{log.read().decode()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"back": back, "done": done, "cpu": cpu, "peak_mb": usage.ru_maxrss / 1024, "detached": stray}
