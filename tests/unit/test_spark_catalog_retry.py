"""The one retry for the embedded SQLite catalog's stale snapshots (the session is a stand-in: no JVM)."""

import pytest

from hybridrec.spark import retry_stale_catalog


class Session:
    def __init__(self, generation: int = 0):
        self.generation = generation

    def newSession(self) -> "Session":  # noqa: N802 - PySpark's name
        return Session(self.generation + 1)


def test_a_stale_snapshot_is_retried_in_a_new_session_which_is_returned():
    failures = iter(["org.sqlite.SQLiteException: [SQLITE_BUSY_SNAPSHOT] cannot commit"])

    def write(session: Session) -> str:
        error = next(failures, None)
        if error:
            raise RuntimeError(error)
        return f"written in session {session.generation}"

    session, result = retry_stale_catalog(Session(), write)
    assert session.generation == 1 and result == "written in session 1"


def test_other_errors_and_the_last_attempt_are_not_retried():
    calls = []

    def broken(session: Session) -> None:
        calls.append(session.generation)
        raise RuntimeError("AnalysisException: table not found")

    with pytest.raises(RuntimeError, match="table not found"):
        retry_stale_catalog(Session(), broken)
    assert calls == [0]

    def always_stale(session: Session) -> None:
        calls.append(session.generation)
        raise RuntimeError("SQLITE_BUSY_SNAPSHOT")

    calls.clear()
    with pytest.raises(RuntimeError, match="SQLITE_BUSY"):
        retry_stale_catalog(Session(), always_stale, attempts=3)
    assert calls == [0, 1, 2]
