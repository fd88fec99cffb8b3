"""The engine and busy-machine benchmarks run end to end on tiny settings and report what they promise."""

from zephyra.bench import busy, engine


def test_engine_bench_compares_concurrent_with_one_at_a_time():
    result = engine.run(preset="tiny", tokens=3, rounds=1, concurrency=(1, 4), threads=1, progress=lambda s: None)
    rows = {r["requests"]: r for r in result["rows"]}
    assert set(rows) == {1, 4} and "arriving" in rows[4] and "arriving" not in rows[1]
    for r in rows.values():
        for mode in ("one_at_a_time", "concurrent"):
            assert r[mode]["tokens"] == 3 * r["requests"] and r[mode]["complete"] and r[mode]["tok_per_s"] > 0
        assert r["speedup"] == r["concurrent"]["tok_per_s"] / r["one_at_a_time"]["tok_per_s"]
    # one at a time, the fourth request waits for three others: its first token comes later than together
    assert rows[4]["one_at_a_time"]["ttft_max_ms"] > rows[4]["concurrent"]["ttft_max_ms"]
    md = engine.markdown(result)
    assert md.count("\n") == 2 + 2 + 3 and "arriving while others decode" in md


def test_busy_bench_measures_idle_and_beside_a_competitor():
    rows = busy.run(steps=1, tokens=2, repeats=1, policies=("one",), workloads=("decode",), competitors=("python",),
                    progress=lambda s: None)
    (row,) = rows
    assert row["idle"] > 0 and row["python"] > 0 and row["threads"] == {"idle": 1, "python": 1}
    assert "beside python" in busy.markdown(rows)
