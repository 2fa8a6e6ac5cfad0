"""Timing that counts all the work a command started, detached processes included (shared by the benchmarks).

`become_subreaper()` makes this process the subreaper of everything it starts (Linux `PR_SET_CHILD_SUBREAPER`), so
a process the command detaches (rendering, a journal flush, a daemon) is reparented to us and `timed` waits for it
(the kernels' zygote mlops-nb keeps warm for the next command is waited for until it is idle, its CPU counted):
"back" is when the command returned, "done" when its last descendant exited, "cpu" the user+system time of all of
them, "peak_mb" the command process's own peak resident memory.
"""
import ctypes, os, resource, subprocess, sys, tempfile, time
from pathlib import Path


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        sys.exit("prctl(PR_SET_CHILD_SUBREAPER) failed: this benchmark needs Linux")


def children(pid: int = 0) -> list[int]:
    """The living children of process `pid` (default this one: the commands we started, and what they left that was
    reparented to us), from Linux's list of each of its threads' children."""
    found = []
    try:
        tasks = list(Path(f"/proc/{pid or os.getpid()}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            found += map(int, (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _cpu(pid: int) -> float:
    """User+system seconds process `pid` has used so far, with its children's, living (the zygote's heir) or reaped
    (0 if it is gone)."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    own = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # utime, stime, cutime, cstime
    return own + sum(_cpu(c) for c in children(pid))


def resident(pid: int) -> bool:
    "Whether `pid` is the kernels' zygote mlops-nb keeps warm for the next run (it waits for it, by design)."
    try:
        cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False
    return b"runner.zygote import serve" in cmd and b"idle=0.0)" not in cmd


def _settle(pids: list[int], before: dict, timeout: float) -> None:
    """Wait until processes `pids` use no more CPU (what the command asked of them is done): 0.1 s without a tick; at
    once if they used none during the command (their CPU then, `before`, is what it is now)."""
    if all(_cpu(x) == before.get(x) for x in pids):
        return
    end, last = time.perf_counter() + timeout, None
    while time.perf_counter() < end:
        now = [_cpu(x) for x in pids]
        if now == last:
            return
        last = now
        time.sleep(0.1)


def timed(cmd: list, cwd: Path, env: dict, deadline: float = 300) -> dict:
    """Run `cmd`; wait for it and every process it started (we are their subreaper); wall, CPU and peak memory.
    A zygote mlops-nb keeps warm for the next command (`resident`) is not waited for: the CPU it uses meanwhile
    (imports, forks) counts, all of it if this command started it."""
    kept = {pid: _cpu(pid) for pid in children() if resident(pid)}
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
            left = children()
            if left and all(resident(x) for x in left):  # only the kept zygote is left: once it is idle, done
                _settle(left, kept, deadline - (time.perf_counter() - t0))
                kept |= {x: kept.get(x, 0.0) for x in left}
                break
            time.sleep(0.005)
        else:
            stray += 1
    done = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    after_kept = sum(_cpu(x) - c for x, c in kept.items())
    if p.returncode != 0:
        log.seek(0)
        sys.exit(f"{' '.join(map(str, cmd))} failed in {cwd}:\n{log.read().decode()[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime) + after_kept
    return {"back": back, "done": done, "cpu": cpu, "peak_mb": usage.ru_maxrss / 1024, "detached": stray}
