"""Serving: the same registered model behind `mlflow models serve` and `mlops-nb serve` (one process, and one a core), under the same load.

Trains a 100-tree random forest with the train pipeline in a temporary project, then serves version 1
with each server on 127.0.0.1 in turn and drives it with the same bounded load generator: 1-row
`dataframe_records` requests over keep-alive connections, `--concurrency` at once, for `--seconds`.
Prints throughput and p50/p99 latency of each, the ratios, and the floor: the forest's own in-process
`predict` on one row. Nothing is asserted.

Measured here (2026-12-07, 2 cores): mlflow models serve 22 req/s (p99 1,054 ms); mlops-nb serve, one process,
416 req/s (p99 57 ms); two processes 423 req/s (p99 68 ms): no gain on 2 cores, where the load generator itself
needs one. Not here yet: the MLServer and BentoML rows of issue 35.

    .venv/bin/python bench/serving.py [--seconds 10] [--concurrency 16]
"""
import argparse, asyncio, json, os, shutil, signal, statistics, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(REPO / "tests"))
from conftest import free_port  # noqa: E402


async def _client(port: int, request: bytes, stop_at: float, latencies: list, errors: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t)
            if not head.startswith(b"HTTP/1.1 200"): errors.append(head.split(b"\r\n")[0])
    finally:
        writer.close()


def load(port: int, body: bytes, seconds: float, concurrency: int) -> dict:
    "Drive POST /invocations with `concurrency` keep-alive connections for `seconds`; throughput and latency."
    request = (f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    latencies, errors = [], []
    async def run():
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*[_client(port, request, stop_at, latencies, errors) for _ in range(concurrency)])
    started = time.perf_counter()
    asyncio.run(run())
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "errors": len(errors), "rps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def wait_ready(port: int, proc, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None: sys.exit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                if r.status == 200: return
        except OSError: pass
        time.sleep(0.3)
    sys.exit("server did not become ready")


def measure(cmd, env, cwd, body, args) -> dict:
    port = free_port()
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(port, proc)
        load(port, body, 2, args.concurrency)  # warm-up
        return load(port, body, args.seconds, args.concurrency)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="mlops-nb-serving-"))
    try:
        shutil.copy(REPO / "settings.ini", root); shutil.copytree(REPO / "pipelines", root / "pipelines")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_NB_"))}
        subprocess.run([BIN / "mlops-nb", "run", "pipelines/train.yaml", "-p", "model=rf", "-p", "n_estimators=100"], cwd=root, env=env,
                       check=True, capture_output=True)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # mlflow models serve execs `uvicorn` from PATH
        sys.path.insert(0, str(REPO))
        import mlflow, pandas as pd
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        model = mlflow.sklearn.load_model("models:/assembly-defect/1")
        test = pd.read_parquet(next(root.glob("runs/*/ingest/test.parquet"))).drop(columns="defect")
        row = test.head(1)
        t = time.perf_counter(); n = 200
        for _ in range(n): model.predict(row)
        floor_ms = (time.perf_counter() - t) / n * 1000
        body = json.dumps({"dataframe_records": json.loads(row.to_json(orient="records", date_format="iso"))}).encode()
        results = {
            "mlflow models serve": measure([BIN / "mlflow", "models", "serve", "-m", "models:/assembly-defect/1", "--env-manager", "local",
                                            "--host", "127.0.0.1"], env, root, body, args),
            "mlops-nb serve": measure([BIN / "mlops-nb", "serve", "--model", "models:/assembly-defect/1", "--host", "127.0.0.1",
                                       "--workers", "1"], env, root, body, args),
            f"mlops-nb serve, {cores} proc.": measure([BIN / "mlops-nb", "serve", "--model", "models:/assembly-defect/1",
                                                       "--host", "127.0.0.1", "--workers", str(cores)], env, root, body, args),
        }
        print(f"1-row requests, {args.concurrency} concurrent, {args.seconds:.0f} s each, 100-tree random forest")
        print(f"{'server':<22}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, r in results.items():
            print(f"{name:<22}{r['requests']:>10}{r['errors']:>8}{r['rps']:>10.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")
        a, b = results["mlflow models serve"], results["mlops-nb serve"]
        print(f"throughput ratio (mlops-nb / mlflow): {b['rps'] / a['rps']:.1f}x (target >= 5x); "
              f"p99 ratio: {b['p99_ms'] / a['p99_ms']:.2f} (target < 1)")
        c = results[f"mlops-nb serve, {cores} proc."]
        print(f"{cores} processes against 1: {c['rps'] / b['rps']:.2f}x the throughput, p99 {c['p99_ms'] / b['p99_ms']:.2f}x "
              "(the load generator shares this machine's cores)")
        print(f"floor: in-process predict of 1 row: {floor_ms:.2f} ms ({1000 / floor_ms:.0f} rows/s unbatched)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
