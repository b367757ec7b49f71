"""Spark and pyiceberg on the same Iceberg catalog: each reads what the other wrote."""

from datetime import datetime, timedelta, timezone

import pytest

from hybridrec.contract import EVENTS
from hybridrec.lake import Lake
from hybridrec.runinfo import new_run
from hybridrec.spark import spark_session
from tests.conftest import lake_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return lake_settings(tmp_path_factory.mktemp("spark-lake"))


@pytest.fixture(scope="module")
def spark(settings):
    session = spark_session(settings, app_name="hybridrec-tests")
    yield session
    session.stop()


def test_spark_write_is_read_by_pyiceberg(spark, settings):
    spark.sql("CREATE NAMESPACE IF NOT EXISTS derived")
    spark.sql("CREATE OR REPLACE TABLE derived.spark_written (user_id STRING, score DOUBLE, day DATE) "
              "USING iceberg PARTITIONED BY (day)")
    spark.sql("INSERT INTO derived.spark_written VALUES ('u1', 0.5, DATE'2026-10-01'), ('u2', 1.5, DATE'2026-10-02')")
    lake = Lake(settings)
    rows = lake.catalog.load_table(("derived", "spark_written")).scan().to_arrow().sort_by("user_id").to_pylist()
    assert [(r["user_id"], r["score"]) for r in rows] == [("u1", 0.5), ("u2", 1.5)]


def test_pyiceberg_write_is_read_by_spark(spark, settings):
    t0 = datetime(2026, 10, 1, 23, 30, tzinfo=timezone.utc)
    batch = EVENTS.to_arrow({
        "event_id": ["e1", "e2", "e3"], "user_id": ["u1", "u1", "u2"], "item_id": ["c1", "c2", "c1"],
        "surface": ["clip"] * 3, "event_type": ["view", "skip", "like"], "dwell_ms": [None, 300, 9000],
        "ts": [t0, t0 + timedelta(hours=1), t0 + timedelta(days=1)],
    })
    Lake(settings).replace(EVENTS, [batch], new_run(settings, "test"))
    spark.catalog.refreshTable("raw.events")
    rows = spark.sql("SELECT event_id, dwell_ms, CAST(ts AS STRING) AS ts FROM raw.events ORDER BY event_id").collect()
    assert [(r.event_id, r.dwell_ms) for r in rows] == [("e1", None), ("e2", 300), ("e3", 9000)]
    assert rows[0].ts == "2026-10-01 23:30:00"
    days = spark.sql("SELECT CAST(partition.ts_day AS STRING) AS day FROM raw.events.partitions ORDER BY day").collect()
    assert [d.day for d in days] == ["2026-10-01", "2026-10-02"]
