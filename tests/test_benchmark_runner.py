"""The one benchmark command keeps its contract: scenarios write rows, the runner tables and saves them.

No figure is asserted (they depend on the machine); what is checked is the shape: the
rows a real scenario writes, the table, the JSON file, and that a crashing or missing
scenario becomes a row instead of stopping the run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import contract  # noqa: E402
import run_all  # noqa: E402
import soak_checks  # noqa: E402


def synthetic_rows() -> list[dict[str, Any]]:
    good = contract.row(
        "ingest-plain", "messages/s", 420.0, 900.0, peak_rss_mb=80.5, target="rate >= 400", met=True, notes="N=500"
    )
    bad = contract.row("outbound", "documents/s", 70.0, 30.0, peak_rss_mb=None, target="rate >= 150", met=False)
    for r in (good, bad):
        r.update(status="ok", seconds=1.0)
    return [good, bad, run_all.status_row("idle-latency", "skipped", "not present (idle_latency.py)")]


def test_a_row_has_every_field_of_the_contract_and_no_nan() -> None:
    r = contract.row("x", "things/s", float("nan"), 0.0, peak_rss_mb=None, target="t", met=False)
    assert tuple(r) == contract.FIELDS
    assert r["rate"] is None and r["ratio"] is None, "not measured is null, never NaN"
    json.dumps(r, allow_nan=False)


def test_the_ratio_is_rate_over_baseline_unless_given() -> None:
    assert contract.row("x", "u", 300.0, 100.0, peak_rss_mb=1.0, target="", met=True)["ratio"] == 3.0
    assert contract.row("x", "u", 300.0, 100.0, peak_rss_mb=1.0, target="", met=True, ratio=0.5)["ratio"] == 0.5


def test_the_table_shows_every_row_with_its_verdict_and_notes() -> None:
    table = run_all.format_table(synthetic_rows())
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["scenario", "unit", "rate"]
    by_name = {line.split()[0]: line for line in lines[2:] if not line.startswith(" ")}
    assert by_name["ingest-plain"].rstrip().endswith("yes")
    assert by_name["outbound"].rstrip().endswith("NO")
    assert by_name["idle-latency"].rstrip().endswith("skipped")
    assert "420" in by_name["ingest-plain"] and "80.5" in by_name["ingest-plain"]
    assert "    not present (idle_latency.py)" in lines
    assert "    N=500" in lines


def test_the_results_file_holds_the_rows_and_the_runs_circumstances(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    rows = synthetic_rows()
    doc = run_all.results_document(rows, quick=True, started=datetime(2026, 12, 2, 8, 0, tzinfo=UTC), seconds=12.3)
    path = tmp_path / "results" / "run_all.json"
    run_all.write_results(doc, path)
    back = json.loads(path.read_text())
    assert back["quick"] is True and back["started"] == "2026-12-02T08:00:00Z"
    assert [r["scenario"] for r in back["rows"]] == ["ingest-plain", "outbound", "idle-latency"]
    assert all(set(contract.FIELDS) <= set(r) for r in back["rows"])


def test_a_crashing_scenario_becomes_a_row_with_its_error(tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import sys\nprint('setting up')\nsys.exit('the relay refused: 554 no')\n")
    outcome = run_all.run_scenario(run_all.Scenario("crashy", str(script)), quick=True, log_dir=tmp_path)
    assert outcome.crashed
    [r] = outcome.rows
    assert r["status"] == "crashed" and r["met"] is False
    assert "exit status 1" in r["notes"] and "554 no" in r["notes"]


def test_a_scenario_that_writes_no_rows_is_a_crash(tmp_path: Path) -> None:
    script = tmp_path / "silent.py"
    script.write_text("print('nothing measured')\n")
    outcome = run_all.run_scenario(run_all.Scenario("silent", str(script)), quick=False, log_dir=tmp_path)
    assert outcome.crashed
    assert outcome.rows[0]["notes"] == "wrote no --json-out file"


def test_a_scenario_script_not_in_the_tree_is_skipped_not_failed(tmp_path: Path) -> None:
    outcome = run_all.run_scenario(run_all.Scenario("later", "not_written_yet.py"), quick=True, log_dir=tmp_path)
    assert not outcome.crashed
    assert outcome.rows[0]["status"] == "skipped"


def test_quick_leaves_out_the_soak_unless_named() -> None:
    quick = [sc.name for sc in run_all.select(run_all.REGISTRY, quick=True, only=[], skip=[])]
    assert "soak" not in quick and "compose" in quick and "idle-latency" in quick
    assert [sc.name for sc in run_all.select(run_all.REGISTRY, quick=True, only=["soak"], skip=[])] == ["soak"]
    assert "compose" not in [sc.name for sc in run_all.select(run_all.REGISTRY, quick=False, only=[], skip=["compose"])]


def test_an_unknown_scenario_name_is_refused() -> None:
    with pytest.raises(SystemExit, match="unknown scenario"):
        run_all.select(run_all.REGISTRY, quick=False, only=["ingset"], skip=[])


def test_the_compose_scenario_writes_one_contract_row_the_runner_reads(tmp_path: Path) -> None:
    compose = next(sc for sc in run_all.REGISTRY if sc.name == "compose")
    outcome = run_all.run_scenario(compose, quick=False, log_dir=tmp_path, extra=["-n", "2"])
    assert not outcome.crashed, (tmp_path / "compose.log").read_text()
    [r] = outcome.rows
    assert r["scenario"] == "compose" and r["status"] == "ok"
    assert r["rate"] > 0 and r["baseline"] > 0 and r["ratio"] > 0 and r["peak_rss_mb"] > 0
    assert isinstance(r["met"], bool)
    assert "documents:" in (tmp_path / "compose.log").read_text(), "the scenario's own output is kept in its log"


def test_the_rss_slope_ignores_the_reset_at_each_restart() -> None:
    flat_levels = [(life, t, 100.0 + 50 * life) for life in range(3) for t in (60.0, 90.0, 120.0)]
    assert soak_checks.within_slope(flat_levels) == 0.0
    growing = [(life, t, 80.0 + t / 60) for life in range(2) for t in (60.0, 120.0, 180.0)]
    assert soak_checks.within_slope(growing) == pytest.approx(1.0)
    assert soak_checks.within_slope([(0, 60.0, 80.0)]) is None
