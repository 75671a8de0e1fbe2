"""`make bench` rewrites docs/performance.md's results section only: the lab notes after it stay."""

from bench.run import END_RESULTS, RESULTS, write_report


def test_a_rerun_replaces_its_blocks_and_keeps_the_others_and_the_lab_notes(tmp_path):
    report = tmp_path / "performance.md"
    report.write_text(f"# Performance\n\n{RESULTS}\n\n<!-- group: cold -->\nold cold\n<!-- end: cold -->\n"
                      f"<!-- group: noop -->\nold noop\n<!-- end: noop -->\n{END_RESULTS}\n\n## Lab notes\n\n"
                      "measured by hand: 4.50 s\n")
    write_report(report, {"cold": "new cold\n"})
    head, _, rest = report.read_text().partition(RESULTS)
    results, _, notes = rest.partition(END_RESULTS)
    assert head == "# Performance\n\n" and notes == "\n\n## Lab notes\n\nmeasured by hand: 4.50 s\n"
    assert "new cold" in results and "old cold" not in results and "old noop" in results
    assert results.index("### Cold plan") < results.index("new cold") < results.index("### No-op run")
