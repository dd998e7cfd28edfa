"""README's "First five minutes" runs as written: its shell blocks, extracted from README.md,
run with bash against a real `storefront serve`, twice in a row (the examples are re-runnable).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.served_app import serve_cli
from tests.tooling import debian_tool

README = Path(__file__).resolve().parents[2] / "README.md"


def first_five_minutes() -> str:
    text = README.read_text()
    section = text.split("\n## First five minutes\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```(?:sh|bash)\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 3, "the section's shell blocks"
    return "\n".join(blocks)


def test_the_readme_blocks_are_extracted_literally() -> None:
    script = first_five_minutes()
    assert "uuidgen" not in script  # not on a plain Debian
    assert "jq" not in script.split()
    assert "BASE=${BASE:-http://127.0.0.1:8000}" in script
    assert "$RUN" in script  # slugs, SKUs and keys unique per run


def test_first_five_minutes_runs_twice_in_a_row(cluster: Any, tmp_path: Path) -> None:
    bash = debian_tool("bash", "bash")
    debian_tool("curl", "curl")
    script = "set -euo pipefail\n" + first_five_minutes()
    with serve_cli(cluster) as base:
        for run in (1, 2):
            done = subprocess.run(
                [bash, "-c", script],
                env={**os.environ, "BASE": base},
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, (run, done.stdout[-2000:], done.stderr[-2000:])
            assert re.search(r"^idempotent-replayed: true", done.stdout, re.I | re.M), run
            assert '"status":"confirmed"' in done.stdout.replace(" ", ""), done.stdout
