"""One SQLite file per search run: every candidate, its result, and the strategy's notes.

The file is the search's memory.  A batch is written as ``pending`` before any
of it is trained and each result is committed the moment it arrives (WAL
journal), so after a crash or ``kill -9`` a re-run finds exactly which
evaluations finished and trains only the rest.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fbnetv3_zoo.errors import UserError

if TYPE_CHECKING:
    from fbnetv3_zoo.search.finished import FinishedTrial

# how evaluate() records a recipes.loop.TrainingDiverged (the loss became NaN): "<name>: <message>"
DIVERGED = "TrainingDiverged"


def diverged(row: dict[str, Any]) -> bool:
    """True for a failed candidate whose training diverged (not one that crashed)."""
    return row["status"] == "failed" and str(row.get("error") or "").startswith(DIVERGED + ":")


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    iteration INTEGER NOT NULL,
    source TEXT NOT NULL,          -- sobol | random | acquisition | genetic | ranked
    vector TEXT NOT NULL,          -- JSON list, the encoding
    arch TEXT NOT NULL,            -- JSON ArchSpec.to_dict()
    recipe TEXT NOT NULL,          -- JSON searched recipe fields
    macs INTEGER NOT NULL,
    params INTEGER NOT NULL,
    predicted REAL,                -- acquisition-time prediction (mean)
    predicted_std REAL,
    status TEXT NOT NULL DEFAULT 'pending',   -- pending | done | failed
    planned_epochs INTEGER,        -- epochs the strategy asked for (NULL: the driver's rule)
    repeat_of INTEGER,             -- a re-measurement (another training seed) of this candidate id
    epochs INTEGER,                -- epochs it was trained for
    score REAL,                    -- proxy top-1 at the early-stopping epoch
    metrics TEXT,                  -- JSON per-epoch records
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    wall_s REAL
);
"""
TABLES = ("candidates", "meta")
APPLICATION_ID = 0x46424E33  # "FBN3" in the file header: marks a database a search created
NOTES = "notes_"  # meta key prefix: a strategy's notes on how it chose iteration N's batch
JSON_COLUMNS = ("vector", "arch", "recipe", "metrics")
DIGITS = 9  # vectors are compared after rounding to this many decimals


class StoreError(UserError):
    """The run database cannot be opened or read (damaged, truncated, read-only)."""


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """Open without writing anything: no WAL switch, no schema, no -shm in a read-only folder."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        db.execute("SELECT COUNT(*) FROM meta").fetchone()
        return db
    except sqlite3.OperationalError:
        db.close()
    # a WAL database in a folder we cannot write to: read the file as it is
    return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30)


def vector_key(vector: Any) -> tuple[float, ...]:
    """A hashable identity for an encoding (rounded, so float noise does not split it)."""
    return tuple(round(float(v), DIGITS) for v in vector)


def _is_ours(db: sqlite3.Connection) -> str | None:
    """None if a search made ``db`` (possibly half-created), else why not."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    stamped = db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    foreign = sorted(tables - set(TABLES))
    if foreign:
        return f"it holds table {foreign[0]}"
    if not stamped and tables != set(TABLES):  # made before the stamp: both tables or nothing
        return f"no table {sorted(set(TABLES) - tables)[0]}"
    return None


def check_ours(path: Path) -> None:
    """Refuse a database that no search made, writing nothing (read before claiming a folder)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    uri = f"file:{quote(str(path.resolve()))}?mode=ro&immutable=1"  # creates no -wal/-shm
    try:
        db = sqlite3.connect(uri, uri=True, timeout=30)
        try:
            why = _is_ours(db)
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        raise StoreError(
            f"{path}: not a usable search database ({err}); restore it or choose another --out"
        ) from None
    if why is not None:
        raise StoreError(
            f"{path}: not a database made by `fbnetv3 search` ({why}); it was left untouched: "
            "choose another --out"
        )


class Store:
    """Thin typed access to the run database; every write commits immediately."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                self.db = _connect_readonly(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                existed = self.path.is_file() and self.path.stat().st_size > 0
                self.db = sqlite3.connect(str(self.path), timeout=30)
                if existed:
                    self._check_ours()  # never add our tables to somebody else's database
                else:  # stamped first: a database cut short by a full disk is still ours
                    self.db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.db.row_factory = sqlite3.Row
            if readonly:
                self.db.execute("SELECT COUNT(*) FROM candidates").fetchone()
            else:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self._create_tables()
        except sqlite3.DatabaseError as err:  # damaged, truncated, not SQLite, unwritable
            if getattr(self, "db", None) is not None:
                self.db.close()
            raise StoreError(
                f"{self.path}: not a usable search database ({err}); free space and run the "
                "same command again, restore it, or choose another --out"
            ) from None

    def _create_tables(self) -> None:
        """Our tables, created if missing (completes a database a full disk cut short)."""
        self.db.executescript(SCHEMA)
        self.db.commit()

    def _check_ours(self) -> None:
        """Refuse a database that a search did not create."""
        why = _is_ours(self.db)
        if why is not None:
            self.db.close()
            raise StoreError(
                f"{self.path}: not a database made by `fbnetv3 search` ({why}); "
                "it was left untouched: choose another --out"
            )

    def _decode(self, value: str, where: str) -> Any:
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            raise StoreError(
                f"{self.path}: {where} is not valid JSON; the database is damaged"
            ) from None

    def close(self) -> None:
        """Close; a writer leaves a plain single-file database (no -wal/-shm) for read-only readers."""
        if not self.readonly:
            # another reader holding it keeps WAL mode, which is just as consistent
            with contextlib.suppress(sqlite3.OperationalError):
                self.db.execute("PRAGMA journal_mode=DELETE")
        self.db.close()

    # ----------------------------------------------------------------- meta
    def get(self, key: str, default: Any = None) -> Any:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path}: cannot read setting {key!r} ({err})") from None
        return default if row is None else self._decode(row["value"], f"setting {key!r}")

    def set(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )
        self.db.commit()

    # ----------------------------------------------------------- candidates
    def add_candidates(self, iteration: int, source: str, rows: list[dict[str, Any]]) -> list[int]:
        """Insert a batch as pending in one transaction; returns the new ids."""
        now = time.time()
        ids = []
        with self.db:
            for r in rows:
                cur = self.db.execute(
                    "INSERT INTO candidates (iteration, source, vector, arch, recipe, macs, params, predicted, predicted_std, planned_epochs, repeat_of, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        iteration,
                        source,
                        json.dumps([float(v) for v in r["vector"]]),
                        json.dumps(r["arch"]),
                        json.dumps(r["recipe"]),
                        int(r["macs"]),
                        int(r["params"]),
                        r.get("predicted"),
                        r.get("predicted_std"),
                        r.get("planned_epochs"),
                        r.get("repeat_of"),
                        now,
                    ),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def mark_started(self, cid: int) -> None:
        self.db.execute(
            "UPDATE candidates SET started = ?, attempts = attempts + 1 WHERE id = ?",
            (time.time(), cid),
        )
        self.db.commit()

    def retry(self, ids: list[int]) -> None:
        """Make failed candidates pending again (a search stopped for failures is resumed)."""
        with self.db:
            self.db.executemany(
                "UPDATE candidates SET status = 'pending', error = NULL, metrics = NULL, "
                "score = NULL WHERE id = ? AND status = 'failed'",
                [(int(i),) for i in ids],
            )

    def record(
        self,
        cid: int,
        status: str,
        *,
        epochs: int | None = None,
        score: float | None = None,
        metrics: list[dict[str, Any]] | None = None,
        error: str | None = None,
        wall_s: float | None = None,
    ) -> None:
        """Store one finished evaluation (done or failed) and commit at once."""
        self.db.execute(
            "UPDATE candidates SET status = ?, epochs = ?, score = ?, metrics = ?, error = ?, wall_s = ?, finished = ? WHERE id = ?",
            (status, epochs, score, json.dumps(metrics or []), error, wall_s, time.time(), cid),
        )
        self.db.commit()

    def finish(self, finished: FinishedTrial) -> None:
        """Store a scored :class:`FinishedTrial` (the one place a typed result becomes a row)."""
        self.record(
            finished.number,
            finished.status,
            epochs=len(finished.curve),
            score=finished.score,
            metrics=finished.metrics(),
            error=finished.error,
            wall_s=finished.wall_s,
        )

    def candidates(self, status: str | None = None) -> list[dict[str, Any]]:
        """All candidates (optionally of one status) in insertion order, JSON decoded."""
        query, args = "SELECT * FROM candidates", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        out = []
        for row in self.db.execute(query + " ORDER BY id", args):
            d = dict(row)
            for key in JSON_COLUMNS:
                if d[key] is not None:
                    d[key] = self._decode(d[key], f"candidate {d['id']}'s {key}")
            score = d["score"]
            if d["status"] == "done" and (
                isinstance(score, bool) or not isinstance(score, int | float)
            ):
                raise StoreError(
                    f"{self.path}: candidate {d['id']} is done but its score is {score!r}; "
                    "the database is damaged"
                )
            out.append(d)
        return out

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])
        return int(
            self.db.execute(
                "SELECT COUNT(*) FROM candidates WHERE status = ?", (status,)
            ).fetchone()[0]
        )

    def known_vectors(self) -> set[tuple[float, ...]]:
        """Keys (:func:`vector_key`) of every candidate ever proposed, whatever its status."""
        return {vector_key(r["vector"]) for r in self.candidates()}

    def measured(
        self, diverged_score: float | None = None
    ) -> tuple[list[dict[str, Any]], Any, Any]:
        """(rows, vectors, scores) of the successfully trained candidates, in id order.

        With ``diverged_score`` (chance accuracy), candidates whose training
        diverged count too, scored that: a NaN loss is what that recipe does,
        and a predictor that never sees it keeps proposing its neighbours.
        Other failures (a crash, out of memory) say nothing about the pair.
        """
        import numpy as np

        rows = self.candidates("done")
        if diverged_score is not None:
            rows += [
                dict(r, score=diverged_score) for r in self.candidates("failed") if diverged(r)
            ]
            rows.sort(key=lambda r: r["id"])
        u = np.array([r["vector"] for r in rows], dtype=float)
        y = np.array([r["score"] for r in rows], dtype=float)
        return rows, u, y

    def rescore(self, scores: dict[int, float | None]) -> None:
        """Replace the scores of finished candidates (e.g. at the early-stopping epoch), atomically."""
        with self.db:
            for cid, score in scores.items():
                self.db.execute("UPDATE candidates SET score = ? WHERE id = ?", (score, cid))

    def last_iteration(self) -> int:
        row = self.db.execute("SELECT MAX(iteration) FROM candidates").fetchone()
        return -1 if row[0] is None else int(row[0])

    # ---------------------------------------------------------------- notes
    def add_notes(self, iteration: int, notes: dict[str, Any]) -> None:
        """Keep a strategy's notes on iteration ``iteration`` (merged; NaN stored as None)."""
        if notes:
            self.set(f"{NOTES}{iteration}", {**self.get(f"{NOTES}{iteration}", {}), **_json(notes)})

    def notes(self) -> dict[int, dict[str, Any]]:
        """Every iteration's notes, by iteration."""
        rows = self.db.execute("SELECT key FROM meta WHERE key GLOB ?", (NOTES + "[0-9]*",))
        keys = sorted(int(r[0][len(NOTES) :]) for r in rows)
        return {k: self.get(f"{NOTES}{k}") for k in keys}


def _json(value: Any) -> Any:
    """``value`` with every NaN replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
