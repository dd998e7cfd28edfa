"""Cold start of Storefront: `.venv/bin/python -m bench.cold_start [--runs 3]`.

Needs the dev cluster (`storefront dev up && storefront migrate && storefront dev seed`; every
command reads `.local/dev.env` by itself). Measures, each `--runs` times in a fresh process:

  import  `import app.main` (and the composition root `containers`), then `Container()` and
          `create_app(...)`, timed inside the child; plus the child's whole wall time
          (interpreter start-up included)
  serve   from spawning `storefront serve` to the first 200 on `/health/live` and on
          `/health/ready` (the primary answered), polled every 5 ms

and prints one line per run plus the median. docs/deployment.md quotes its output.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from bench.run import BIN, HOST, ROOT, free_port

CHILD = """
import json, time
t0 = time.perf_counter()
import app.main, containers
t1 = time.perf_counter()
application = app.main.create_app(containers.Container())
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "build": t2 - t1}))
"""


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


def import_run() -> dict[str, float]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    figures["process"] = time.perf_counter() - started
    return figures


def serve_run(timeout: float = 60.0) -> dict[str, float]:
    port = free_port()
    base = f"http://{HOST}:{port}"
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(BIN / "storefront"), "serve", "--host", HOST, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    figures: dict[str, float] = {}
    try:
        while len(figures) < 2:
            if time.perf_counter() - started > timeout or server.poll() is not None:
                raise SystemExit(f"error: storefront serve not ready within {timeout:.0f} s")
            for name in ("live", "ready"):
                if name not in figures and status(f"{base}/health/{name}") == 200:
                    figures[name] = time.perf_counter() - started
            time.sleep(0.005)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return figures


def line(figures: dict[str, float]) -> str:
    return "  ".join(f"{name} {seconds * 1000:7.0f} ms" for name, seconds in figures.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    for label, measure in (("import+build", import_run), ("serve->200", serve_run)):
        results = [measure() for _ in range(runs)]
        for number, figures in enumerate(results, 1):
            print(f"{label} run {number}: {line(figures)}")
        medians = {name: statistics.median(r[name] for r in results) for name in results[0]}
        print(f"{label} median: {line(medians)}")


if __name__ == "__main__":
    main()
