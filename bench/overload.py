"""Overload: `mlops-nb serve` offered 4x what it can answer, with and without its bound on requests in flight.

Trains a 100-tree random forest with the train pipeline in a temporary project and serves version 1 on
127.0.0.1. First it measures the server's capacity: requests of `--rows` rows each, `--concurrency` at a
time over keep-alive connections (a closed loop), as requests per second. Then it *offers* 4x that rate
for `--seconds` (an open loop: a new request starts on schedule whether or not the earlier ones were
answered, each on its own connection, as independent callers do), twice, interleaved:

- `--max-in-flight K` (K = `--limit`): past K requests being answered, the server answers 503 at once,
  with `Retry-After`;
- `--max-in-flight 1000000`: in effect no bound, so every request waits its turn.

For each it prints what was offered and what came back (200, 503, anything else, and requests that got
no answer within `--timeout` s), the latency of the answered ones, and the server process's resident
memory (sampled every 0.2 s from /proc: at the start of the overload, its peak, and at the end). The load
is bounded in count and time and targets 127.0.0.1 only. Nothing is asserted.

    .venv/bin/python bench/overload.py [--seconds 10] [--rows 200] [--limit 16]
"""
import argparse, asyncio, json, os, shutil, signal, statistics, subprocess, sys, tempfile, threading, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))
from conftest import free_port  # noqa: E402
from serving import wait_ready  # noqa: E402
from alltime import children  # noqa: E402


def rss_mb(pid: int) -> float:
    "Resident memory of process `pid` and its children (a server may fork workers), in MB."
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def descendants(pid: int) -> list[int]:
    kids = children(pid)
    return kids + [g for k in kids for g in descendants(k)]


class Sampler(threading.Thread):
    "Samples a process's resident memory every 0.2 s until stopped."

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.samples.append(rss_mb(self.pid))
            self.done.wait(0.2)

    def stop(self) -> dict:
        self.done.set()
        self.join()
        s = self.samples or [0.0]
        return {"rss_start": s[0], "rss_peak": max(s), "rss_end": s[-1]}


def request_bytes(port: int, body: bytes, close: bool) -> bytes:
    close_header = "Connection: close\r\n" if close else ""
    return (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{close_header}\r\n").encode() + body


async def read_answer(reader) -> tuple[int, bool]:
    "The status of one HTTP answer, and whether it said Retry-After; the body is read and dropped."
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return int(lines[0].split()[1]), any(l.lower().startswith(b"retry-after") for l in lines)


def capacity(port: int, body: bytes, seconds: float, concurrency: int) -> float:
    "Answers per second with `concurrency` callers each waiting for its answer (keep-alive)."
    request, done = request_bytes(port, body, close=False), []

    async def caller(stop_at):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            writer.write(request)
            status, _ = await read_answer(reader)
            done.append(status)
        writer.close()

    async def run():
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*[caller(stop_at) for _ in range(concurrency)])

    started = time.perf_counter()
    asyncio.run(run())
    return sum(1 for s in done if s == 200) / (time.perf_counter() - started)


def offer(port: int, body: bytes, rate: float, seconds: float, timeout: float) -> dict:
    "Start a request every 1/rate s for `seconds`, each on its own connection; count what comes back."
    request, n = request_bytes(port, body, close=True), int(rate * seconds)
    out = {"offered": n, "200": 0, "503": 0, "503 with Retry-After": 0, "other": 0, "no answer": 0, "latency": []}

    async def one(at):
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        t = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(request)
                status, retry = await read_answer(reader)
                writer.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            out["no answer"] += 1
            return
        key = str(status) if status in (200, 503) else "other"
        out[key] += 1
        out["503 with Retry-After"] += status == 503 and retry
        if status == 200:
            out["latency"].append(time.perf_counter() - t)

    async def run():
        start = time.perf_counter() + 0.1
        await asyncio.gather(*[one(start + i / rate) for i in range(n)])

    asyncio.run(run())
    return out


def serve(root: Path, env: dict, limit: int):
    port = free_port()
    proc = subprocess.Popen([BIN / "mlops-nb", "serve", "--model", "models:/assembly-defect/1", "--port", str(port),
                             "--max-in-flight", str(limit), "--no-log"], cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_ready(port, proc)
    return proc, port


def stop(proc) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="how long each overload lasts")
    ap.add_argument("--rows", type=int, default=200, help="rows per request")
    ap.add_argument("--limit", type=int, default=16, help="--max-in-flight of the bounded server")
    ap.add_argument("--concurrency", type=int, default=8, help="callers while measuring capacity")
    ap.add_argument("--timeout", type=float, default=30, help="a request not answered within this is lost")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-overload-"))
    try:
        shutil.copy(REPO / "settings.ini", root)
        shutil.copytree(REPO / "pipelines", root / "pipelines")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
        subprocess.run([BIN / "mlops-nb", "run", "pipelines/train.yaml", "-p", "model=rf", "-p", "n_estimators=100",
                        "-p", f"n_rows={max(2000, args.rows * 4)}"], cwd=root, env=env, check=True, capture_output=True)
        import pandas as pd
        test = pd.read_parquet(next(root.glob("runs/*/ingest/test.parquet"))).drop(columns="defect")
        rows = pd.concat([test] * (args.rows // len(test) + 1)).head(args.rows)
        split = json.loads(rows.to_json(orient="split", index=False, date_format="iso"))
        body = json.dumps({"dataframe_split": split}).encode()

        proc, port = serve(root, env, args.limit)
        try:
            capacity(port, body, 2, args.concurrency)  # warm-up
            rate = capacity(port, body, 5, args.concurrency)
        finally:
            stop(proc)
        results = {}
        for name, limit in ((f"--max-in-flight {args.limit}", args.limit), ("--max-in-flight 1000000", 1_000_000)):
            proc, port = serve(root, env, limit)
            try:
                capacity(port, body, 1, args.concurrency)  # warm-up
                sampler = Sampler(proc.pid)
                sampler.start()
                got = offer(port, body, 4 * rate, args.seconds, args.timeout)
                results[name] = {**got, **sampler.stop()}
            finally:
                stop(proc)

        print(f"capacity: {rate:.0f} requests/s of {args.rows} rows ({args.concurrency} callers waiting for answers)")
        print(f"offered 4x: {4 * rate:.0f} requests/s for {args.seconds:.0f} s, each on a new connection; "
              f"no answer = none within {args.timeout:.0f} s")
        cols = ("offered", "200", "503", "503 with Retry-After", "other", "no answer")
        print(f"{'server':<26}" + "".join(f"{c:>22}" for c in cols))
        for name, r in results.items():
            print(f"{name:<26}" + "".join(f"{r[c]:>22}" for c in cols))
        print(f"{'server':<26}{'200 p50 ms':>12}{'200 p99 ms':>12}"
              f"{'RSS start MB':>14}{'RSS peak MB':>13}{'RSS end MB':>12}")
        for name, r in results.items():
            q = statistics.quantiles(r["latency"], n=100) if len(r["latency"]) > 1 else [float("nan")] * 99
            print(f"{name:<26}{q[49] * 1000:>12.1f}{q[98] * 1000:>12.1f}{r['rss_start']:>14.0f}{r['rss_peak']:>13.0f}"
                  f"{r['rss_end']:>12.0f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
