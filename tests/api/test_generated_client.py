"""A client generated with openapi-python-client from the served document, during the test run,
drives create / get / patch with If-Match / order / report against a real server, and gets typed
`Problem` objects (not None) for a 404, a 412 and a 422."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.tooling import python_tool

FLOW = Path(__file__).with_name("generated") / "client_flow.py"
CONFIG = "package_name_override: storefront_client\nproject_name_override: storefront-client\n"
CONFIG += "post_hooks: []\n"


def test_a_generated_client_works_and_sees_typed_problems(
    served: str, api_key: str, tmp_path: Path
) -> None:
    generator = python_tool("openapi-python-client", "openapi-python-client==0.29.1")
    spec = tmp_path / "openapi.json"
    document = httpx.get(f"{served}/openapi.json")  # the newest version's
    spec.write_text(document.text)
    (tmp_path / "config.yaml").write_text(CONFIG)
    generated = subprocess.run(
        [
            generator,
            "generate",
            f"--path={spec}",
            "--meta=none",
            f"--output-path={tmp_path / 'storefront_client'}",
            f"--config={tmp_path / 'config.yaml'}",
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    python = str(Path(generator).with_name("python"))
    run = subprocess.run(
        [python, str(FLOW), served, api_key, document.headers["storefront-version"]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout)
    assert seen["created"][:2] == [201, "ProductRead"]
    assert seen["read"] == [200, "ProductRead"]
    assert seen["patched"] == [200, "Renamed", 2]
    assert seen["412"] == [412, "Problem", "catalog.version_mismatch", 412]
    assert seen["404"] == [404, "Problem", "catalog.not_found", 404]
    assert seen["422"] == [422, "Problem", "request.invalid", 422]
    assert seen["order"] == [201, "OrderRead"]
    assert seen["order_read"][0] == 200
    assert seen["report"] == [200, "SalesReport"]
