"""`controlplane db export` / `db import`: a whole history moved between SQLite and
PostgreSQL, all or nothing, bad input refused with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from controlplane.store import PostgresStore, Revision, SQLiteStore, Store
from controlplane.store.postgres import migrate_database

from .conftest import config_with


def controlplane(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The same command, run in this process (quicker for many cases of bad input)."""
    result = CliRunner().invoke(app, list(args))
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def history(store: Store) -> list[Revision]:
    return [store.get(m.number) for m in reversed(store.list(limit=1000))]


def made_history(path: Path) -> list[Revision]:
    """A SQLite store with a few revisions, one a rollback, messages in several scripts."""
    store = SQLiteStore(path)
    try:
        store.commit(config_with("a"), None, "alice", "first")
        store.commit(config_with("a", "b"), 1, "bob", "añadir b — 追加")
        store.commit(config_with("a"), 2, "carol", "rollback to 1")
        store.commit(config_with("c"), 3, "ci", "")
        return history(store)
    finally:
        store.close()


def test_a_history_goes_sqlite_to_postgres_to_sqlite_unchanged(
    tmp_path: Path, postgres_url: str
) -> None:
    original = made_history(tmp_path / "a.db")
    exported = controlplane(
        "db", "export", str(tmp_path / "a.jsonl"), "--db", str(tmp_path / "a.db")
    )
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == f"{tmp_path / 'a.jsonl'}: 4 revisions from {tmp_path / 'a.db'}\n"

    assert controlplane("db", "migrate", "--db", postgres_url).returncode == 0
    imported = controlplane("db", "import", str(tmp_path / "a.jsonl"), "--db", postgres_url)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout == f"{postgres_url}: 4 revisions imported from {tmp_path / 'a.jsonl'}\n"
    on_postgres = PostgresStore(postgres_url)
    try:
        assert history(on_postgres) == original
        assert on_postgres.commit(config_with("d"), 4, "dave").number == 5
    finally:
        on_postgres.close()

    assert (
        controlplane("db", "export", str(tmp_path / "b.jsonl"), "--db", postgres_url).returncode
        == 0
    )
    back = controlplane("db", "import", str(tmp_path / "b.jsonl"), "--db", str(tmp_path / "b.db"))
    assert back.returncode == 0, back.stderr
    returned = SQLiteStore(tmp_path / "b.db")
    try:
        assert history(returned)[:4] == original
        assert [r.author for r in history(returned)] == ["alice", "bob", "carol", "ci", "dave"]
    finally:
        returned.close()
    first_lines = (tmp_path / "b.jsonl").read_text().splitlines()[:5]
    assert first_lines == (tmp_path / "a.jsonl").read_text().splitlines()


def test_the_file_is_a_header_then_one_revision_per_line(tmp_path: Path) -> None:
    original = made_history(tmp_path / "a.db")
    controlplane("db", "export", str(tmp_path / "a.jsonl"), "--db", str(tmp_path / "a.db"))
    header, *lines = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert header == {"format": "controlplane-history", "version": 1}
    assert [line["number"] for line in lines] == [1, 2, 3, 4]
    assert lines[1]["message"] == "añadir b — 追加"
    assert datetime.fromisoformat(lines[0]["created_at"]) == original[0].created_at
    assert sorted(lines[0]) == ["author", "config", "created_at", "message", "number"]


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database holding one revision."""
    if request.param == "sqlite":
        db = str(tmp_path / "target.db")
    else:
        db = request.getfixturevalue("postgres_url")
        migrate_database(db)
    store = SQLiteStore(db) if request.param == "sqlite" else PostgresStore(db)
    store.commit(config_with("existing"), None, "old", "keep me")
    store.close()
    return db


def heads(db: str) -> list[tuple[int, str]]:
    store = PostgresStore(db) if db.startswith("postgresql://") else SQLiteStore(db)
    try:
        return [(r.number, r.author) for r in history(store)]
    finally:
        store.close()


def test_import_refuses_a_store_that_holds_revisions_unless_forced(
    tmp_path: Path, target: str
) -> None:
    made_history(tmp_path / "a.db")
    controlplane("db", "export", str(tmp_path / "a.jsonl"), "--db", str(tmp_path / "a.db"))
    refused = controlplane("db", "import", str(tmp_path / "a.jsonl"), "--db", target)
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"{target} already holds revisions; import into an empty store,"
        " or pass --force to replace them"
    ]
    assert heads(target) == [(1, "old")]
    forced = controlplane("db", "import", str(tmp_path / "a.jsonl"), "--db", target, "--force")
    assert forced.returncode == 0, forced.stderr
    assert heads(target) == [(1, "alice"), (2, "bob"), (3, "carol"), (4, "ci")]


def revision_line(number: int, /, **changes: object) -> str:
    line: dict[str, object] = {
        "number": number,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat(),
        "author": "alice",
        "message": "",
        "config": json.loads(config_with("a").model_dump_json()),
    }
    line.update(changes)
    return json.dumps(line)


HEADER = '{"format": "controlplane-history", "version": 1}'


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([], "F:1: not a controlplane history"),
        (['{"format": "something else"}'], "F:1: not a controlplane history"),
        ([HEADER, revision_line(1), "{oops"], "F:3: not JSON: "),
        ([HEADER, revision_line(2)], "F:2: expected revision number 1, found 2"),
        ([HEADER, revision_line(1), revision_line(1)], "F:3: expected revision number 2, found 1"),
        ([HEADER, revision_line(1, number=True)], "F:2: expected revision number 1, found True"),
        ([HEADER, revision_line(1, created_at="yesterday")], "F:2: created_at 'yesterday' is"),
        (
            [HEADER, revision_line(1, created_at="2026-01-02T03:04:05")],
            "F:2: created_at '2026-01-02T03:04:05' is not an ISO 8601 time with an offset",
        ),
        ([HEADER, revision_line(1, author=None)], "F:2: author must be a string without NUL"),
        ([HEADER, revision_line(1, message="a\x00b")], "F:2: message must be a string"),
        ([HEADER, revision_line(1, extra=1)], "F:2: expected an object with exactly number,"),
        (
            [HEADER, revision_line(1), revision_line(2, config={"clusters": [{"name": "a"}]})],
            "F:3: revision 2: config clusters[0].endpoints: ",
        ),
    ],
)
def test_a_bad_history_is_refused_with_one_line_and_writes_nothing(
    tmp_path: Path, target: str, lines: list[str], error: str
) -> None:
    (tmp_path / "F").write_text("".join(line + "\n" for line in lines))
    result = in_process("db", "import", str(tmp_path / "F"), "--db", target, "--force")
    assert result.returncode == 2
    error = error.replace("F:", f"{tmp_path / 'F'}:", 1)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(error), result.stderr
    assert heads(target) == [(1, "old")]


def test_import_and_export_name_missing_files_and_stores(tmp_path: Path) -> None:
    missing = controlplane("db", "import", str(tmp_path / "nope"), "--db", str(tmp_path / "x.db"))
    assert (missing.returncode, missing.stderr) == (
        2,
        f"{tmp_path / 'nope'}: No such file or directory\n",
    )
    no_store = controlplane("db", "export", str(tmp_path / "out"), "--db", str(tmp_path / "x.db"))
    assert (no_store.returncode, no_store.stderr) == (
        2,
        f"{tmp_path / 'x.db'}: no such SQLite file\n",
    )
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "out").exists()
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    not_text = controlplane("db", "import", str(binary), "--db", str(tmp_path / "x.db"))
    assert (not_text.returncode, not_text.stderr) == (2, f"{binary}: not UTF-8 text\n")
