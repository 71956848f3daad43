"""Benchmark records (mutomo.benchrecord): what ``make bench-check`` compares."""

from mutomo.benchrecord import latest_record, new_record, write_record


def test_benchmark_records_round_trip(tmp_path):
    """A benchmark record carries the machine, the commit and the numbers, and the newest one is
    found again by date."""
    first = new_record("throughput", tmp_path / "script.py", {"rows": [{"muons": 10, "rate": 1.0}]}, [0.1, 0.2, 0.3])
    first["date"] = "2026-12-01T00:00:00+00:00"
    second = dict(first, date="2026-12-02T00:00:00+00:00", results={"rows": [{"muons": 10, "rate": 2.0}]})
    write_record(second, tmp_path)
    write_record(first, tmp_path)
    latest = latest_record(tmp_path, "throughput")
    assert latest is not None and latest["results"]["rows"][0]["rate"] == 2.0
    assert latest["machine"]["cpu_model"] and latest["machine"]["cores"] >= 1
    assert latest_record(tmp_path, "absent") is None
