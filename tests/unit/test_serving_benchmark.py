"""The serving benchmark's arithmetic and plot, on made-up answers (the benchmark itself needs a server)."""

from hybridrec.bench import serving as bench
STAGES = {"queue": 1.0, "load": 1.0, "candidates": 4.0, "rank": 2.0, "rules": 1.0, "respond": 0.2}


def _answer(ms: float, degraded: bool = False) -> dict:
    return {"ms": ms, "lag_ms": 0.1, "done_s": 0.5, "status": 200, "degraded": degraded,
            "reason": "overloaded" if degraded else None, "stages": {} if degraded else STAGES}


def test_summary_separates_shed_answers_and_the_plot_survives_a_rate_with_none_personalised(tmp_path):
    calm = bench._summary({"results": [_answer(10.0 + n % 10) for n in range(100)], "schedule_s": 1.0,
                              "cpu_s": 0.01})
    swamped = bench._summary({"results": [_answer(3.0, degraded=True)] * 50 + [{**_answer(0), "status": 0}] * 2,
                                 "schedule_s": 1.0, "cpu_s": 0.01})
    assert calm["shed"] == 0 and calm["personalised_rps"] == 100.0 and calm["stages"]["candidates"]["p99_ms"] == 4.0
    assert swamped["shed"] == 50 and swamped["errors"] == 2 and swamped["stages"] == {}

    path = bench.plot_latency({"100": calm, "200": swamped}, tmp_path / "serving.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
