"""The CI suspension drill (about 30 s of real time), run once through the
`switchyard drill run` CLI as an operator would, outside `cargo test` so its
SLOs are judged on a machine not also running the Rust suites: the CLI
exits 0 only if every SLO held, and the report it writes says why."""

import json
import os
import subprocess
import tempfile

from conftest import BIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ci_suspension_drill_passes_and_writes_its_report():
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(
            [BIN, "drill", "run", os.path.join(REPO, "drills", "ci-suspension.toml"), "--out", out],
            capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, f"the drill failed:\n{run.stdout}\n{run.stderr}"
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        with open(os.path.join(out, "report.html")) as f:
            html = f.read()

    assert report["passed"] is True
    assert report["mode"] == "self-contained"
    assert report["totals"]["requests"] >= 500, "about 20 req/s for 30 s"
    assert all(step["ok"] for step in report["timeline"]), "every step applied"
    assert any(e["kind"] == "suspend" and e.get("target") == "claude" for e in report["events"]), \
        "the audit trail shows the ops suspension"
    assert all(slo["passed"] for slo in report["slos"])
    # Claude served before the fault and after the resume, gpt in between.
    served = lambda t, target: report["seconds"][t]["served"].get(target, 0)  # noqa: E731
    assert served(1, "claude") > 0 and served(10, "gpt") > 0 and served(25, "claude") > 0

    assert "PASSED" in html
    assert html.count("<svg") >= 4, "outcome, served-by, attempts, states charts"
    assert "Outcomes per second" in html and "Served by" in html
    for external in ("src=", "href=", "<script", "<link"):
        assert external not in html, "self-contained: no external assets, no scripts"
