"""Sync state in one SQLite file (sqlite-utils): links, baseline pairs, owned followers,
failures, conflicts, cycles and the journal of every remote write.

The store knows SQL, never HTTP.  Every change that belongs to one link is committed in one
transaction (`commit_link`), and no transaction is ever held open across a network call: the
engine reads, talks to the APIs, and only then writes here.  No secret is ever stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, cast

import sqlite_utils

from bridge.core.actions import Adopt, Reconcile, WriteSentry, WriteTracker
from bridge.core.fields import tracker_kept
from bridge.core.linkrun import Link, LinkRun
from bridge.core.outcomes import WROTE_OUTCOMES, JournalEntry, Pending, pending_from_json, pending_to_json
from bridge.core.plan import LinkState
from bridge.core.values import Field, Pair, Value, decode_value, encode_value, shown
from bridge.core.workflow import Transition
from bridge.errors import LockHeldError, StateFileError

SCHEMA = sqlite_utils.Migrations("sentry-tracker-bridge")


@SCHEMA()
def m001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE links (
            sentry_id TEXT PRIMARY KEY,
            tracker_key TEXT NOT NULL UNIQUE,
            origin TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE baselines (
            sentry_id TEXT NOT NULL REFERENCES links(sentry_id) ON DELETE CASCADE,
            field TEXT NOT NULL,
            sentry_value TEXT,
            tracker_value TEXT,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (sentry_id, field)
        );
        CREATE TABLE owned_followers (
            sentry_id TEXT NOT NULL REFERENCES links(sentry_id) ON DELETE CASCADE,
            login TEXT NOT NULL,
            added_at TEXT NOT NULL,
            PRIMARY KEY (sentry_id, login)
        );
        CREATE TABLE intents (
            id INTEGER PRIMARY KEY,
            sentry_id TEXT NOT NULL UNIQUE,
            unique_key TEXT NOT NULL,
            queue TEXT NOT NULL,
            state TEXT NOT NULL,
            tracker_key TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE failures (
            sentry_id TEXT PRIMARY KEY,
            tracker_key TEXT,
            error TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            first_failed TEXT NOT NULL,
            last_failed TEXT NOT NULL,
            next_try TEXT NOT NULL
        );
        CREATE TABLE conflicts (
            id INTEGER PRIMARY KEY,
            sentry_id TEXT NOT NULL,
            tracker_key TEXT NOT NULL,
            field TEXT NOT NULL,
            sentry_value TEXT,
            tracker_value TEXT,
            detected_at TEXT NOT NULL,
            resolved_at TEXT,
            resolution TEXT
        );
        CREATE UNIQUE INDEX conflicts_open ON conflicts(sentry_id, field) WHERE resolved_at IS NULL;
        CREATE TABLE cycles (
            id INTEGER PRIMARY KEY,
            started TEXT NOT NULL,
            finished TEXT,
            ok INTEGER,
            dry_run INTEGER NOT NULL,
            links INTEGER NOT NULL DEFAULT 0,
            writes_sentry INTEGER NOT NULL DEFAULT 0,
            writes_tracker INTEGER NOT NULL DEFAULT 0,
            failures INTEGER NOT NULL DEFAULT 0,
            conflicts INTEGER NOT NULL DEFAULT 0,
            summary TEXT
        );
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            cycle_id INTEGER,
            sentry_id TEXT,
            tracker_key TEXT,
            side TEXT NOT NULL,
            field TEXT NOT NULL,
            action TEXT NOT NULL,
            value TEXT,
            outcome TEXT NOT NULL,
            detail TEXT
        );
        CREATE INDEX journal_link ON journal(sentry_id, id);
        """
    )


@SCHEMA()
def m002_backlinks(db: sqlite_utils.Database) -> None:
    """Whether the Tracker key is shown on the Sentry issue yet (an external-issue upsert)."""
    db.execute("ALTER TABLE links ADD COLUMN backlinked INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE intents ADD COLUMN error TEXT")


@SCHEMA()
def m003_tracker_cache(db: sqlite_utils.Database) -> None:
    """The last state seen of each linked Tracker issue: an incremental cycle reads only what
    changed in Tracker since its cursor and takes the rest from here."""
    db.execute("CREATE TABLE tracker_cache (tracker_key TEXT PRIMARY KEY, data TEXT NOT NULL, seen_at TEXT NOT NULL)")


@SCHEMA()
def m004_outcomes(db: sqlite_utils.Database) -> None:
    """Writes whose outcome is not known yet (noted before they are sent); holds of flapping
    links as their own state (they used to be conflict rows named `flapping`); the followers a
    create asked for (owned once the issue is found, even when the create's answer was lost)."""
    db.executescript(
        """
        CREATE TABLE pending_writes (
            sentry_id TEXT NOT NULL REFERENCES links(sentry_id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            noted_at TEXT NOT NULL,
            PRIMARY KEY (sentry_id, kind)
        );
        CREATE TABLE holds (
            sentry_id TEXT PRIMARY KEY REFERENCES links(sentry_id) ON DELETE CASCADE,
            tracker_key TEXT NOT NULL,
            reason TEXT NOT NULL,
            since TEXT NOT NULL
        );
        INSERT OR IGNORE INTO holds (sentry_id, tracker_key, reason, since)
            SELECT c.sentry_id, c.tracker_key, coalesce(json_extract(c.sentry_value, '$'), 'flapping'), c.detected_at
            FROM conflicts c JOIN links l ON l.sentry_id = c.sentry_id
            WHERE c.field = 'flapping' AND c.resolved_at IS NULL;
        DELETE FROM conflicts WHERE field = 'flapping';
        ALTER TABLE intents ADD COLUMN followers TEXT;
        """
    )


@SCHEMA()
def m005_intent_backoff(db: sqlite_utils.Database) -> None:
    """A create refused for good is retried with backoff, and waits without taking a slot of
    `create.max_per_cycle` from newer issues."""
    db.execute("ALTER TABLE intents ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE intents ADD COLUMN next_try TEXT")


@SCHEMA()
def m006_one_note_per_attempt(db: sqlite_utils.Database) -> None:
    """A note per write attempt, not per kind of write: a newer attempt's note must never replace
    an older one the link's commit has not settled yet (a process stopped in between would
    forget what the older write did)."""
    db.executescript(
        """
        CREATE TABLE pending_writes_new (
            sentry_id TEXT NOT NULL REFERENCES links(sentry_id) ON DELETE CASCADE,
            attempt TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL,
            noted_at TEXT NOT NULL,
            PRIMARY KEY (sentry_id, attempt)
        );
        INSERT INTO pending_writes_new SELECT sentry_id, kind, kind, data, noted_at FROM pending_writes;
        DROP TABLE pending_writes;
        ALTER TABLE pending_writes_new RENAME TO pending_writes;
        """
    )


# What an incremental cycle needs of a Tracker issue (mapping.tracker_* and the workflow).
# The synced fields' keys come from their declarations.
CACHED_TRACKER_FIELDS = ("key", "version", *tracker_kept(), "queue", "type", "updatedAt", "aliases")


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")


def encode(value: Value) -> str:
    """JSON for a field value; sets become sorted lists under a marker so they round-trip."""
    return json.dumps(encode_value(value))


def decode(text: str | None) -> Value:
    return None if text is None else decode_value(json.loads(text))


# Journal entries said once while they stay the same (a conflict, a value without a counterpart).
REPEATABLE = ("conflict", "unmapped")

@SCHEMA()
def m007_history_by_time(db: sqlite_utils.Database) -> None:
    """Pruning by age (state.keep_days) reads the oldest rows first."""
    db.execute("CREATE INDEX IF NOT EXISTS journal_at ON journal(at)")
    db.execute("CREATE INDEX IF NOT EXISTS cycles_started ON cycles(started)")


@SCHEMA()
def m008_workflow(db: sqlite_utils.Database) -> None:
    """The transitions learned per (queue, issue type, status): a one-shot run starts from what
    earlier runs learned instead of walking tickets around to learn it again."""
    db.execute(
        "CREATE TABLE workflow (queue TEXT NOT NULL, issue_type TEXT NOT NULL, status TEXT NOT NULL, "
        "transitions TEXT NOT NULL, learned_at TEXT NOT NULL, PRIMARY KEY (queue, issue_type, status))")


# Every migration this version knows, in order: a file with any other was written by a newer one.
MIGRATIONS = ("m001_initial", "m002_backlinks", "m003_tracker_cache", "m004_outcomes", "m005_intent_backoff",
              "m006_one_note_per_attempt", "m007_history_by_time", "m008_workflow")


# -- the state file itself ---------------------------------------------------------------------

WAY_BACK = "restore a copy, or move it aside and run `sentry-tracker-bridge relink` to rebuild the links"


def ensure_state_file(file: Path) -> bool:
    """Create the state file (0600: it names people and issues) if there is none; True when it
    was created.  A missing folder is an operator's mistake (a typo in state.path, a missing
    StateDirectory=), never a reason to start over with no links."""
    if file.is_symlink() and not file.exists():
        raise StateFileError(f"state file {file} is a link to {os.readlink(file)}, which does not exist (a volume "
                             "not mounted?); fix the link or state.path")
    if file.exists():
        if not file.is_file():
            raise StateFileError(f"state file {file} is not a file; check state.path")
        return file.stat().st_size == 0  # empty: as good as new, and said so
    if not file.parent.is_dir():
        raise StateFileError(_no_folder(file))
    try:
        os.close(os.open(file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        if not file.is_file():
            raise StateFileError(f"state file {file} is not a regular file; check state.path") from None
        return False  # another process made it just now
    except OSError as exc:
        raise StateFileError(f"state file {file} cannot be created in {file.parent} ({exc.strerror}); "
                             "give the service's user write access to the folder") from None
    return True


def check_state_file(db: sqlite_utils.Database, file: Path, *, writable: bool = True) -> None:
    """Refuse a file that is not a healthy SQLite database of this program (or of an older
    version of it), reading only."""
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        raise _damaged(file, str(exc)) from None
    problems = [str(row[0]) for row in rows if str(row[0]) != "ok"]
    if problems:
        raise _damaged(file, "; ".join(problems[:3]))
    applied = SCHEMA.applied(db)
    # sqlite-utils makes its migrations table before the first migration: a first start cut short
    # there leaves that table alone, which is ours, not another program's.
    tables = [name for name in db.table_names() if not name.startswith("sqlite_") and name != SCHEMA.migrations_table]
    if tables and not applied:
        raise StateFileError(f"state file {file} is an SQLite database of another program (tables "
                             f"{', '.join(sorted(tables)[:5])}); it was left untouched: correct state.path")
    known = set(MIGRATIONS)
    unknown = [m.name for m in applied if m.name not in known]
    if unknown:
        raise StateFileError(f"state file {file} was written by a newer version of sentry-tracker-bridge "
                             f"(schema {unknown[-1]}); upgrade the program, or restore a copy made before")
    if writable and (not os.access(file, os.W_OK) or not os.access(file.parent, os.W_OK)):
        raise _unwritable(file, None)


def state_file_health(file: Path) -> tuple[str, str]:
    """What `doctor` says of the state file, reading only: (level, sentence)."""
    if not file.exists():
        if not file.parent.is_dir():
            return "fail", _no_folder(file)
        if not os.access(file.parent, os.W_OK):
            return "fail", f"{file}: no file yet, and its folder {file.parent} is not writable for this user"
        return "pass", f"{file}: no file yet; the first sync creates it (mode 0600)"
    try:
        store = Store.open_read_only(file)
    except StateFileError as exc:
        return "fail", str(exc)
    try:
        links = int(store._rows("SELECT count(*) AS n FROM links")[0]["n"]) if store.db["links"].exists() else 0
        behind = len(SCHEMA.pending(store.db))
    except sqlite3.DatabaseError as exc:
        return "fail", str(_damaged(file, str(exc)))
    finally:
        store.close()
    if not os.access(file, os.W_OK) or not os.access(file.parent, os.W_OK):
        return "fail", str(_unwritable(file, None))
    upgrade = f"; {behind} schema upgrade(s) apply at the next sync" if behind else ""
    mode = file.stat().st_mode & 0o777
    if mode & 0o077:
        return "warn", (f"{file}: {links} link(s), healthy{upgrade}; but mode {mode:04o} lets other users read "
                        "it (it names people and issues): chmod 600")
    return "pass", f"{file}: {links} link(s), integrity check ok{upgrade}"


def _no_folder(file: Path) -> str:
    return (f"state file {file}: its folder {file.parent} does not exist; create it (the systemd unit's "
            "StateDirectory= does) or correct state.path")


def _damaged(file: Path, why: str) -> StateFileError:
    return StateFileError(f"state file {file} is damaged ({why}); it was left untouched: {WAY_BACK}")


def _unwritable(file: Path, error: sqlite3.OperationalError | None) -> StateFileError:
    if error is not None and not any(word in str(error) for word in ("readonly", "read-only", "unable to open")):
        return StateFileError(f"state file {file} could not be used ({error}); check the disk and that no other "
                              "program holds it, then run again")
    why = f" ({error})" if error is not None else ""
    return StateFileError(f"state file {file} cannot be written{why}: the file or its folder is read-only for "
                          "this user; give the service's user write access (SQLite also writes -wal and -shm "
                          "files beside it)")


class StateLock:
    """An exclusive `flock` on `<state file>.lock`: one writer per state file."""

    def __init__(self, state_path: Path) -> None:
        self.path = Path(f"{state_path}.lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if not self.path.parent.is_dir():
            raise StateFileError(_no_folder(self.path.with_name(self.path.name.removesuffix(".lock"))))
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StateFileError(f"lock file {self.path} cannot be opened ({exc.strerror}); give the service's "
                                 "user write access to the folder") from None
        handle = os.fdopen(fd, "r+")  # held for the life of the process
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise LockHeldError(
                f"another instance holds {self.path}" + (f" (pid {holder})" if holder else "")
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    @staticmethod
    def is_free(state_path: Path) -> bool:
        """Whether no process holds the lock now (read-only: the lock file is never created)."""
        try:
            fd = os.open(f"{state_path}.lock", os.O_RDONLY)
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # closing drops a lock taken here
        return True

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


log = logging.getLogger("bridge.store")


class PendingLog:
    """Write-ahead notes of remote writes about to be sent, taken from any thread.

    A write whose answer is lost, or whose process dies before the commit, must not be forgotten:
    its note says what was being written and from what, so the next cycle can tell the bridge's
    own doing (a follower it added, a status a transition path reached) from a person's edit.
    Write workers note on their own connection (SQLite serializes it with the main one); the
    link's commit replaces the notes with what is still unknown."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._lock = threading.Lock()

    def note(self, sentry_id: str, pending: Pending, now: datetime | None = None) -> None:
        """Note (or update: a transition path's steps) one attempt's note; other notes of the link
        stay, settled or not, until the link's commit."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO pending_writes (sentry_id, attempt, kind, data, noted_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sentry_id, attempt) DO UPDATE SET data = excluded.data",
                [sentry_id, pending.key, pending.kind, pending_to_json(pending), now_iso(now)])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class Store:
    def __init__(self, db: sqlite_utils.Database, path: Path | None = None) -> None:
        self.db = db
        self._path = path
        self._pending_log: PendingLog | None = None

    @classmethod
    def open(cls, path: Path | str) -> Store:
        """Open (creating a new file, 0600, only in a folder that exists) and migrate.  A file
        that is damaged, read-only or from a newer version is refused with `StateFileError`
        before anything is written to it."""
        file = Path(path)
        created = ensure_state_file(file)
        try:
            db = sqlite_utils.Database(str(file))
            check_state_file(db, file)
            db.enable_wal()
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA busy_timeout = 5000")
            SCHEMA.apply(db)
        except sqlite3.OperationalError as exc:
            raise _unwritable(file, exc) from None
        except sqlite3.DatabaseError as exc:
            raise _damaged(file, str(exc)) from None
        if created:
            log.warning("new state file %s: no links yet (a first sync links and creates from here)", file,
                        extra={"event": "state.created"})
        return cls(db, file)

    @property
    def pending_log(self) -> PendingLog:
        """Where write workers note a write before sending it (opened on first use)."""
        if self._pending_log is None:
            if self._path is None:
                raise RuntimeError("a read-only store takes no notes")
            self._pending_log = PendingLog(self._path)
        return self._pending_log

    def close(self) -> None:
        if self._pending_log is not None:
            self._pending_log.close()
        self.db.close()

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """One write transaction, taken with `BEGIN IMMEDIATE`: write workers note pending
        writes on a connection of their own, and a deferred transaction that read first could
        then not upgrade to a write (SQLite answers "database is locked" at once, busy timeout
        or not).  Nested use is a savepoint."""
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            with self.db.atomic():  # a savepoint: sqlite-utils' own bookkeeping stays in charge
                yield
        except BaseException:
            if conn.in_transaction:
                conn.rollback()
            raise
        conn.commit()

    def _rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, list(params)))

    # -- links ------------------------------------------------------------------------------
    def links(self) -> list[Link]:
        """Every link, in Sentry id order.  Built row by row (no list of N row dicts first), with
        the few `origin` values shared: this list is held for a whole cycle."""
        return [
            Link(row["sentry_id"], row["tracker_key"], sys.intern(row["origin"]), row["created_at"],
                 row["backlinked"])
            for row in self.db.query("SELECT * FROM links ORDER BY CAST(sentry_id AS INTEGER)")
        ]

    def link_count(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM links")[0]["n"])

    def find_link(self, ref: str) -> Link | None:
        """By Sentry id or Tracker key."""
        rows = self._rows("SELECT * FROM links WHERE sentry_id = ? OR tracker_key = ?", (ref, ref))
        return Link(**rows[0]) if rows else None

    def add_link(self, sentry_id: str, tracker_key: str, origin: str = "manual") -> None:
        """Add a link; raises ValueError when either side is already linked elsewhere."""
        for link in (self.find_link(sentry_id), self.find_link(tracker_key)):
            if link is not None and (link.sentry_id, link.tracker_key) != (sentry_id, tracker_key):
                raise ValueError(f"already linked: {link.sentry_id} <-> {link.tracker_key}")
        with self.atomic():
            self.db.execute(
                "INSERT OR IGNORE INTO links (sentry_id, tracker_key, origin, created_at) VALUES (?, ?, ?, ?)",
                [sentry_id, tracker_key, origin, now_iso()],
            )

    def add_links(self, pairs: Iterable[tuple[str, str]], origin: str = "manual") -> int:
        """Many links in one transaction (bulk import); pairs already linked are skipped."""
        stamp = now_iso()
        with self.atomic():
            before = self.link_count()
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO links (sentry_id, tracker_key, origin, created_at) VALUES (?, ?, ?, ?)",
                [(sid, key, origin, stamp) for sid, key in pairs],
            )
        return self.link_count() - before

    def remove_link(self, sentry_id: str) -> bool:
        with self.atomic():
            cursor = self.db.execute("DELETE FROM links WHERE sentry_id = ?", [sentry_id])
            self.db.execute("DELETE FROM failures WHERE sentry_id = ?", [sentry_id])
            self.db.execute(
                "UPDATE conflicts SET resolved_at = ?, resolution = 'unlinked' "
                "WHERE sentry_id = ? AND resolved_at IS NULL",
                [now_iso(), sentry_id],
            )
        return bool(cursor.rowcount)

    # -- baselines and followers ------------------------------------------------------------
    def baselines(self) -> dict[str, dict[Field, Pair]]:
        """Every link's baseline pairs (inspection; cycles read them per batch)."""
        return self._baselines("", ())

    def baselines_for(self, sentry_ids: Sequence[str]) -> dict[str, dict[Field, Pair]]:
        """Baselines of some links (a batch of a streamed cycle)."""
        return self._baselines(f"WHERE sentry_id IN ({','.join('?' * len(sentry_ids))})", sentry_ids)

    def _baselines(self, where: str, params: Sequence[str]) -> dict[str, dict[Field, Pair]]:
        result: dict[str, dict[Field, Pair]] = {}
        sql = f"SELECT sentry_id, field, sentry_value, tracker_value FROM baselines {where}"  # noqa: S608
        for row in self._rows(sql, params):
            name = cast(Field, row["field"])
            result.setdefault(row["sentry_id"], {})[name] = Pair(decode(row["sentry_value"]),
                                                                 decode(row["tracker_value"]))
        return result

    def owned_followers(self) -> dict[str, frozenset[str]]:
        """Every link's bridge-added followers (inspection; cycles read them per batch)."""
        return self._owned("", ())

    def owned_followers_for(self, sentry_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        return self._owned(f"WHERE sentry_id IN ({','.join('?' * len(sentry_ids))})", sentry_ids)

    def _owned(self, where: str, params: Sequence[str]) -> dict[str, frozenset[str]]:
        grouped: dict[str, set[str]] = {}
        for row in self._rows(f"SELECT sentry_id, login FROM owned_followers {where}", params):  # noqa: S608
            grouped.setdefault(row["sentry_id"], set()).add(row["login"])
        return {key: frozenset(value) for key, value in grouped.items()}

    def cached_tracker(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        marks = ",".join("?" * len(keys))
        sql = f"SELECT tracker_key, data FROM tracker_cache WHERE tracker_key IN ({marks})"  # noqa: S608
        return {row["tracker_key"]: json.loads(row["data"]) for row in self._rows(sql, keys)}

    def cache_tracker(self, issues: Iterable[Mapping[str, Any]], now: datetime | None = None) -> None:
        """Remember what was seen of these Tracker issues (only the fields a cycle needs)."""
        stamp = now_iso(now)
        rows = [(str(issue["key"]), json.dumps(slim_tracker(issue)), stamp) for issue in issues]
        if rows:
            with self.atomic():
                self.db.conn.executemany("INSERT OR REPLACE INTO tracker_cache VALUES (?, ?, ?)", rows)

    def commit_run(self, run: LinkRun, cycle_id: int | None = None, now: datetime | None = None,
                   *, followers_seen: frozenset[str] | None = None) -> list[JournalEntry]:
        """Everything one link's run left behind, in one transaction: baselines, owned followers
        (only those still following, when `followers_seen` says who follows now), journal entries,
        conflicts opened or settled, writes still pending, and the failure record cleared."""
        repeats: list[JournalEntry] = []
        stamp = now_iso(now)
        sid = run.sentry_id
        with self.atomic():
            self._put_baselines(sid, run.baselines, stamp)
            for login in sorted(run.owned_added):
                self.db.execute("INSERT OR IGNORE INTO owned_followers VALUES (?, ?, ?)", [sid, login, stamp])
            for login in sorted(run.owned_removed):
                self.db.execute("DELETE FROM owned_followers WHERE sentry_id = ? AND login = ?", [sid, login])
            if followers_seen is not None:
                # A bridge-added follower who unfollowed by hand is no longer ours to manage.
                keep = sorted(followers_seen | run.owned_added)
                marks = ",".join("?" * len(keep))
                self.db.execute(
                    f"DELETE FROM owned_followers WHERE sentry_id = ? AND login NOT IN ({marks})",  # noqa: S608
                    [sid, *keep],
                )
            still_open = self._open_conflict_values(sid) if run.conflicts else {}
            for entry in run.journal:
                if entry.action == "conflict":
                    pair = run.conflicts.get(entry.field)
                    now_values = None if pair is None else (encode(pair.sentry), encode(pair.tracker))
                    same = now_values is not None and still_open.get(entry.field) == now_values
                else:
                    same = entry.action in REPEATABLE and self._latest(sid, entry.field) == (entry.action, entry.value)
                if same:
                    repeats.append(entry)  # the same open conflict or unmapped value as last time: said once
                    continue
                self._journal(cycle_id, sid, run.tracker_key, entry, stamp)
            if run.error is None:
                self._unmapped_over(cycle_id, run, stamp)
            for settled in sorted(run.settled - set(run.conflicts)):
                self.db.execute(
                    "UPDATE conflicts SET resolved_at = ?, resolution = 'settled' "
                    "WHERE sentry_id = ? AND field = ? AND resolved_at IS NULL",
                    [stamp, sid, settled],
                )
            self._put_conflicts(sid, run.tracker_key, run.conflicts, stamp)
            self.db.execute("DELETE FROM pending_writes WHERE sentry_id = ?", [sid])
            for pending in run.pending.values():
                self.db.execute("INSERT INTO pending_writes (sentry_id, attempt, kind, data, noted_at) "
                                "VALUES (?, ?, ?, ?, ?)",
                                [sid, pending.key, pending.kind, pending_to_json(pending), stamp])
            if run.error is None:
                self.db.execute("DELETE FROM failures WHERE sentry_id = ?", [sid])
        return repeats
    def add_relinked(self, link: Link, baselines: Mapping[Field, Pair], conflicts: Mapping[Field, Pair]) -> None:
        """A link rebuilt by `relink` with its baselines and recorded disagreements, in one
        transaction: a link without baselines would look new to the next sync and be written."""
        stamp = now_iso()
        with self.atomic():
            self.db.execute("INSERT INTO links (sentry_id, tracker_key, origin, created_at, backlinked) "
                            "VALUES (?, ?, ?, ?, ?)",
                            [link.sentry_id, link.tracker_key, link.origin, stamp, link.backlinked])
            self._put_baselines(link.sentry_id, baselines, stamp)
            self._put_conflicts(link.sentry_id, link.tracker_key, conflicts, stamp)

    def _put_baselines(self, sid: str, baselines: Mapping[Field, Pair], stamp: str) -> None:
        for name, pair in baselines.items():
            self.db.execute(
                "INSERT INTO baselines VALUES (?, ?, ?, ?, ?) ON CONFLICT(sentry_id, field) DO UPDATE SET "
                "sentry_value = excluded.sentry_value, tracker_value = excluded.tracker_value, "
                "updated_at = excluded.updated_at",
                [sid, name, encode(pair.sentry), encode(pair.tracker), stamp],
            )

    def _put_conflicts(self, sid: str, key: str, conflicts: Mapping[Field, Pair], stamp: str) -> None:
        for name, pair in conflicts.items():
            self.db.execute(
                "INSERT INTO conflicts (sentry_id, tracker_key, field, sentry_value, tracker_value, detected_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET sentry_value = excluded.sentry_value, "
                "tracker_value = excluded.tracker_value",
                [sid, key, name, encode(pair.sentry), encode(pair.tracker), stamp],
            )

    def link_states(self, sentry_ids: Sequence[str]) -> dict[str, LinkState]:
        """What the planner needs of each of these links (the engine and `explain` alike)."""
        baselines = self.baselines_for(sentry_ids)
        owned = self.owned_followers_for(sentry_ids)
        conflicted = self.conflicted_fields(sentry_ids)
        pending = self.pending_for(sentry_ids)
        return {
            sid: LinkState(baselines.get(sid, {}), owned.get(sid, frozenset()), conflicted.get(sid, frozenset()),
                           pending.get(sid, ()))
            for sid in sentry_ids
        }

    def pending_for(self, sentry_ids: Sequence[str]) -> dict[str, tuple[Pending, ...]]:
        marks = ",".join("?" * len(sentry_ids))
        sql = (f"SELECT sentry_id, kind, data FROM pending_writes WHERE sentry_id IN ({marks}) "  # noqa: S608
               "ORDER BY noted_at, rowid")
        grouped: dict[str, list[Pending]] = {}
        for row in self._rows(sql, sentry_ids):
            try:
                grouped.setdefault(row["sentry_id"], []).append(pending_from_json(row["data"]))
            except ValueError as exc:
                log.warning("ignoring an unreadable pending write of %s (%s): %s", row["sentry_id"], row["kind"],
                            exc, extra={"event": "pending.unreadable", "link": row["sentry_id"]})
        return {sid: tuple(items) for sid, items in grouped.items()}

    def pending_links(self) -> set[str]:
        """Links with a write whose outcome is not known yet (read fresh, never from a cache)."""
        return {row["sentry_id"] for row in self._rows("SELECT DISTINCT sentry_id FROM pending_writes")}

    def _journal(self, cycle_id: int | None, sid: str | None, key: str | None, e: JournalEntry, stamp: str) -> None:
        self.db.execute(
            "INSERT INTO journal (at, cycle_id, sentry_id, tracker_key, side, field, action, value, outcome, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [stamp, cycle_id, sid, key, e.side, e.field, e.action, e.value, e.outcome, e.detail],
        )

    def _unmapped_over(self, cycle_id: int | None, run: LinkRun, stamp: str) -> None:
        """A value without a counterpart that is gone (changed by a person, or now mapped) is
        journaled as over, so that its return is said again rather than taken as a repeat."""
        still = {e.field for e in run.journal if e.action == "unmapped"}
        # Only a field this run moved on (adopted, wrote or judged) can have lost its unmapped
        # value; one held (switched off, unchanged), in conflict or not reached says nothing.
        moved_on = {a.field for a in run.actions if isinstance(a, (Adopt, Reconcile, WriteSentry, WriteTracker))}
        if not moved_on - still:
            return  # the common case (an idle link): no query in the cycle's commit path
        rows = self.db.execute(
            "SELECT j.side, j.field, j.value FROM journal j WHERE j.sentry_id = ? AND j.action = 'unmapped' AND "
            "j.id = (SELECT MAX(id) FROM journal WHERE sentry_id = j.sentry_id AND field = j.field)",
            [run.sentry_id]).fetchall()
        for side, name, value in rows:
            if name in moved_on and name not in still:
                self._journal(cycle_id, run.sentry_id, run.tracker_key,
                              JournalEntry(str(side), str(name), "unmapped_over", str(value), "settled",
                                           "the value without a counterpart is gone"), stamp)

    def _open_conflict_values(self, sentry_id: str) -> dict[str, tuple[Any, Any]]:
        rows = self.db.execute("SELECT field, sentry_value, tracker_value FROM conflicts "
                               "WHERE sentry_id = ? AND resolved_at IS NULL", [sentry_id]).fetchall()
        return {str(r[0]): (r[1], r[2]) for r in rows}

    def _latest(self, sentry_id: str, field: str) -> tuple[str, str] | None:
        """The action and value of a link's newest journal entry for one field."""
        row = self.db.execute("SELECT action, value FROM journal WHERE sentry_id = ? AND field = ? "
                              "ORDER BY id DESC LIMIT 1", [sentry_id, field]).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def workflow(self, since: datetime) -> list[tuple[tuple[str, str, str], tuple[Transition, ...]]]:
        """The transitions learned since `since` (older knowledge is learned again: a queue's
        workflow can be edited)."""
        rows = self._rows("SELECT queue, issue_type, status, transitions FROM workflow WHERE learned_at >= ?",
                          (now_iso(since),))
        return [((r["queue"], r["issue_type"], r["status"]),
                 tuple(Transition(str(t[0]), str(t[1])) for t in json.loads(r["transitions"]))) for r in rows]

    def save_workflow(self, entries: Iterable[tuple[tuple[str, str, str], tuple[Transition, ...]]],
                      now: datetime | None = None) -> None:
        """Keep what is known now: an entry that changed (or is new) is stamped now, one that did
        not keeps its time (so it still ages out), one known no more is dropped."""
        stamp = now_iso(now)
        wanted = {key: json.dumps([[tr.id, tr.to] for tr in moves]) for key, moves in entries}
        with self.atomic():
            kept = {(r[0], r[1], r[2]): r[3] for r in
                    self.db.execute("SELECT queue, issue_type, status, transitions FROM workflow").fetchall()}
            for key in set(kept) - set(wanted):
                self.db.execute("DELETE FROM workflow WHERE queue = ? AND issue_type = ? AND status = ?", list(key))
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO workflow VALUES (?, ?, ?, ?, ?)",
                [(*key, data, stamp) for key, data in wanted.items() if kept.get(key) != data])

    def prune(self, before: datetime) -> dict[str, int]:
        """Forget journal entries and cycles older than `before` (state.keep_days), keeping the
        last successful cycle whatever its age (`status` and /healthz read it)."""
        stamp = now_iso(before)
        with self.atomic():
            journal = self.db.execute("DELETE FROM journal WHERE at < ?", [stamp]).rowcount
            cycles = self.db.execute(
                "DELETE FROM cycles WHERE started < ? AND finished IS NOT NULL AND id NOT IN "
                "(SELECT id FROM cycles WHERE ok = 1 AND dry_run = 0 ORDER BY finished DESC LIMIT 1)", [stamp]).rowcount
        return {"journal": journal, "cycles": cycles}

    def journal(self, sentry_id: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        if sentry_id is None:
            return self._rows("SELECT * FROM journal ORDER BY id DESC LIMIT ?", (limit,))
        return self._rows("SELECT * FROM journal WHERE sentry_id = ? ORDER BY id DESC LIMIT ?", (sentry_id, limit))

    # -- failures ---------------------------------------------------------------------------
    def record_failure(
        self,
        sentry_id: str,
        tracker_key: str | None,
        error: str,
        *,
        backoff_max_seconds: int,
        journal: Iterable[JournalEntry] = (),
        cycle_id: int | None = None,
        now: datetime | None = None,
    ) -> int:
        """Count one more failure and schedule the next try with capped exponential backoff."""
        moment = now or datetime.now(UTC)
        stamp = now_iso(moment)
        with self.atomic():
            rows = self._rows("SELECT attempts, first_failed FROM failures WHERE sentry_id = ?", (sentry_id,))
            attempts = (rows[0]["attempts"] if rows else 0) + 1
            first = rows[0]["first_failed"] if rows else stamp
            delay = min(backoff_max_seconds, 30 * 2 ** min(attempts - 1, 20))
            self.db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)",
                [sentry_id, tracker_key, error, attempts, first, stamp, now_iso(moment + timedelta(seconds=delay))],
            )
            for entry in journal:
                self._journal(cycle_id, sentry_id, tracker_key, entry, stamp)
        return attempts

    def failing(self, sentry_ids: Sequence[str]) -> set[str]:
        marks = ",".join("?" * len(sentry_ids))
        sql = f"SELECT sentry_id FROM failures WHERE sentry_id IN ({marks})"  # noqa: S608
        return {row["sentry_id"] for row in self._rows(sql, sentry_ids)}

    def conflicted_fields(self, sentry_ids: Sequence[str]) -> dict[str, frozenset[str]]:
        """Fields with an open conflict, per link (the planner settles those back in step)."""
        marks = ",".join("?" * len(sentry_ids))
        sql = (f"SELECT sentry_id, field FROM conflicts WHERE resolved_at IS NULL "  # noqa: S608
               f"AND sentry_id IN ({marks})")
        grouped: dict[str, set[str]] = {}
        for row in self._rows(sql, sentry_ids):
            grouped.setdefault(row["sentry_id"], set()).add(row["field"])
        return {key: frozenset(value) for key, value in grouped.items()}

    def clear_failure(self, sentry_id: str) -> None:
        with self.atomic():
            self.db.execute("DELETE FROM failures WHERE sentry_id = ?", [sentry_id])

    def failures(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM failures ORDER BY sentry_id")

    def not_due(self, now: datetime | None = None) -> set[str]:
        """Links still waiting out their backoff."""
        rows = self._rows("SELECT sentry_id FROM failures WHERE next_try > ?", (now_iso(now),))
        return {row["sentry_id"] for row in rows}

    # -- conflicts --------------------------------------------------------------------------
    def open_conflicts(self) -> list[dict[str, Any]]:
        rows = self._rows("SELECT * FROM conflicts WHERE resolved_at IS NULL ORDER BY id")
        for row in rows:
            row["sentry_value"] = shown(decode(row["sentry_value"]))
            row["tracker_value"] = shown(decode(row["tracker_value"]))
        return rows

    # -- intents (create exactly once) and cursors -----------------------------------------
    def add_intent(self, sentry_id: str, unique: str, queue: str, now: datetime | None = None,
                   followers: frozenset[str] = frozenset()) -> None:
        """Journal the intention to create *before* the POST, so a crash leaves a trace; with the
        followers the create asks for, so they are owned however the create's answer goes."""
        stamp = now_iso(now)
        with self.atomic():
            rows = self._rows("SELECT state, followers FROM intents WHERE sentry_id = ?", (sentry_id,))
            if rows and rows[0]["state"] != "pending":
                return
            # Every follower any attempt asked for: whichever attempt landed, its followers are ours.
            asked = sorted(set(followers) | (intent_followers(rows[0]) if rows else frozenset()))
            self.db.execute(
                "INSERT INTO intents (sentry_id, unique_key, queue, state, created_at, updated_at, followers) "
                "VALUES (?, ?, ?, 'pending', ?, ?, ?) ON CONFLICT(sentry_id) DO UPDATE SET "
                "followers = excluded.followers, updated_at = excluded.updated_at",
                [sentry_id, unique, queue, stamp, stamp, json.dumps(asked)],
            )

    def intent_of(self, sentry_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM intents WHERE sentry_id = ?", (sentry_id,))
        return rows[0] if rows else None

    def intents(self, state: str = "pending") -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM intents WHERE state = ? ORDER BY id", (state,))

    def intent_error(self, sentry_id: str, error: str, *, backoff_max_seconds: int = 3600,
                     now: datetime | None = None) -> None:
        """Record why a create failed and when to try it again (capped exponential backoff)."""
        moment = now or datetime.now(UTC)
        with self.atomic():
            rows = self._rows("SELECT attempts FROM intents WHERE sentry_id = ?", (sentry_id,))
            attempts = (int(rows[0]["attempts"]) if rows else 0) + 1
            delay = min(backoff_max_seconds, 30 * 2 ** min(attempts - 1, 20))
            self.db.execute("UPDATE intents SET error = ?, attempts = ?, next_try = ?, updated_at = ? "
                            "WHERE sentry_id = ?",
                            [error, attempts, now_iso(moment + timedelta(seconds=delay)), now_iso(moment), sentry_id])

    def intents_due(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Pending intents not waiting out a backoff."""
        return self._rows("SELECT * FROM intents WHERE state = 'pending' AND (next_try IS NULL OR next_try <= ?) "
                          "ORDER BY id", (now_iso(now),))

    def complete_intent(
        self, sentry_id: str, tracker_key: str, origin: str, owned: frozenset[str] = frozenset(),
        now: datetime | None = None,
    ) -> None:
        """Link the created (or found) issue and close the intent, in one transaction."""
        stamp = now_iso(now)
        with self.atomic():
            self.db.execute("INSERT OR IGNORE INTO links (sentry_id, tracker_key, origin, created_at) "
                            "VALUES (?, ?, ?, ?)", [sentry_id, tracker_key, origin, stamp])
            for login in sorted(owned):
                self.db.execute("INSERT OR IGNORE INTO owned_followers VALUES (?, ?, ?)", [sentry_id, login, stamp])
            self.db.execute(
                "UPDATE intents SET state = 'done', tracker_key = ?, error = NULL, updated_at = ? WHERE sentry_id = ?",
                [tracker_key, stamp, sentry_id],
            )
            self.db.execute("DELETE FROM failures WHERE sentry_id = ?", [sentry_id])

    def known_sentry_ids(self) -> set[str]:
        """Linked, or with an intent in any state: never to be created again."""
        rows = self._rows("SELECT sentry_id FROM links UNION SELECT sentry_id FROM intents")
        return {row["sentry_id"] for row in rows}

    def cycles_writing(self, window: int) -> dict[str, int]:
        """Per link, in how many of the last `window` cycles the bridge wrote to it (flapping)."""
        rows = self._rows(
            "SELECT sentry_id, count(DISTINCT cycle_id) AS n FROM journal WHERE outcome IN (?, ?, ?) "
            "AND action NOT IN ('conflict', 'unmapped') AND cycle_id > (SELECT coalesce(max(id), 0) FROM cycles) - ? "
            "GROUP BY sentry_id",
            (*WROTE_OUTCOMES, window),
        )
        return {row["sentry_id"]: int(row["n"]) for row in rows}

    def held(self) -> set[str]:
        """Links held back because they flapped, until an operator lifts the hold."""
        return {row["sentry_id"] for row in self._rows("SELECT sentry_id FROM holds")}

    def holds(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM holds ORDER BY since, sentry_id")

    def hold(self, sentry_id: str, tracker_key: str, reason: str, now: datetime | None = None) -> None:
        with self.atomic():
            self.db.execute("INSERT OR IGNORE INTO holds VALUES (?, ?, ?, ?)",
                            [sentry_id, tracker_key, reason, now_iso(now)])
            self._journal(None, sentry_id, tracker_key,
                          JournalEntry("both", "link", "hold", "", "held", reason), now_iso(now))

    def lift_hold(self, sentry_id: str, how: str, baselines: Mapping[Field, Pair], now: datetime | None = None) -> None:
        """Lift a hold and set baseline pairs in one transaction (`conflicts resolve`)."""
        stamp = now_iso(now)
        with self.atomic():
            rows = self._rows("SELECT tracker_key FROM holds WHERE sentry_id = ?", (sentry_id,))
            if not rows:
                raise ValueError(f"no hold on {sentry_id}")
            self._put_baselines(sentry_id, baselines, stamp)
            self.db.execute("DELETE FROM holds WHERE sentry_id = ?", [sentry_id])
            self._journal(None, sentry_id, rows[0]["tracker_key"],
                          JournalEntry("both", "link", "LiftHold", how, "ok", "lifted by the operator"), stamp)

    def unbacklinked(self) -> list[Link]:
        return [Link(**row) for row in self._rows("SELECT * FROM links WHERE backlinked = 0 ORDER BY sentry_id")]

    def mark_backlinked(self, sentry_id: str) -> None:
        with self.atomic():
            self.db.execute("UPDATE links SET backlinked = 1 WHERE sentry_id = ?", [sentry_id])

    def cursor(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM cursors WHERE name = ?", (name,))
        return str(rows[0]["value"]) if rows else None

    def set_cursor(self, name: str, value: str, now: datetime | None = None) -> None:
        with self.atomic():
            self.db.execute("INSERT OR REPLACE INTO cursors VALUES (?, ?, ?)", [name, value, now_iso(now)])

    # -- cycles -----------------------------------------------------------------------------
    def begin_cycle(self, dry_run: bool, now: datetime | None = None) -> int:
        with self.atomic():
            cursor = self.db.execute(
                "INSERT INTO cycles (started, dry_run) VALUES (?, ?)", [now_iso(now), int(dry_run)]
            )
        return int(cursor.lastrowid or 0)

    def finish_cycle(self, cycle_id: int, summary: Mapping[str, Any], now: datetime | None = None) -> None:
        with self.atomic():
            self.db.execute(
                "UPDATE cycles SET finished = ?, ok = ?, links = ?, writes_sentry = ?, writes_tracker = ?, "
                "failures = ?, conflicts = ?, summary = ? WHERE id = ?",
                [
                    now_iso(now),
                    int(bool(summary.get("ok"))),
                    summary.get("links", 0),
                    summary.get("writes_sentry", 0),
                    summary.get("writes_tracker", 0),
                    summary.get("failures", 0),
                    summary.get("conflicts", 0),
                    json.dumps(summary, default=str),
                    cycle_id,
                ],
            )

    def cycles(self, limit: int = 10) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM cycles WHERE dry_run = 0 ORDER BY id DESC LIMIT ?", (limit,))

    def last_success(self) -> str | None:
        rows = self._rows("SELECT max(finished) AS t FROM cycles WHERE ok = 1 AND dry_run = 0")
        return rows[0]["t"] if rows else None

    def pending_intents(self) -> int:
        return int(self._rows("SELECT count(*) AS n FROM intents WHERE state = 'pending'")[0]["n"])

    # -- operator tooling (issue 7) ---------------------------------------------------------
    @classmethod
    def open_read_only(cls, path: Path | str) -> Store:
        """Open an existing state file for reading only (`explain`): no migration, no lock, and
        SQLite itself refuses any write.  Raises FileNotFoundError when there is no file yet."""
        file = Path(path)
        if not file.parent.is_dir():
            raise StateFileError(_no_folder(file))
        if not file.is_file() or file.stat().st_size == 0:
            raise FileNotFoundError(str(file))
        connection = sqlite3.connect(f"{file.absolute().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        connection.execute("PRAGMA busy_timeout = 5000")
        db = sqlite_utils.Database(connection)
        try:
            check_state_file(db, file, writable=False)
            if SCHEMA.pending(db):
                raise StateFileError(f"state file {file} is from an older version of sentry-tracker-bridge; the next "
                                     "sync (or the service) upgrades it, then run this again")
        except BaseException:
            connection.close()
            raise
        return cls(db)

    def link_baselines(self, sentry_id: str) -> dict[Field, tuple[Pair, str]]:
        """One link's baseline pairs, each with the time it last moved."""
        rows = self._rows("SELECT field, sentry_value, tracker_value, updated_at FROM baselines WHERE sentry_id = ?",
                          (sentry_id,))
        return {
            cast(Field, row["field"]): (Pair(decode(row["sentry_value"]), decode(row["tracker_value"])),
                                        row["updated_at"])
            for row in rows
        }

    def owned_followers_of(self, sentry_id: str) -> frozenset[str]:
        return self.owned_followers_for([sentry_id]).get(sentry_id, frozenset())

    def failure_of(self, sentry_id: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM failures WHERE sentry_id = ?", (sentry_id,))
        return rows[0] if rows else None

    def conflict_by_id(self, conflict_id: int) -> dict[str, Any] | None:
        """One conflict (open or not) with its values decoded (`sentry_value` / `tracker_value`
        are the raw planner values, sets included)."""
        rows = self._rows("SELECT * FROM conflicts WHERE id = ?", (conflict_id,))
        if not rows:
            return None
        row = rows[0]
        row["sentry_value"] = decode(row["sentry_value"])
        row["tracker_value"] = decode(row["tracker_value"])
        return row

    def conflicts_of(self, sentry_id: str, *, include_resolved: bool = False) -> list[dict[str, Any]]:
        """One link's conflicts, newest first, values shown as in `open_conflicts`."""
        where = "" if include_resolved else " AND resolved_at IS NULL"
        rows = self._rows(f"SELECT * FROM conflicts WHERE sentry_id = ?{where} ORDER BY id DESC",  # noqa: S608
                          (sentry_id,))
        for row in rows:
            row["sentry_value"] = shown(decode(row["sentry_value"]))
            row["tracker_value"] = shown(decode(row["tracker_value"]))
        return rows

    def resolve_conflict(
        self, conflict_id: int, resolution: str, baselines: Mapping[Field, Pair], now: datetime | None = None
    ) -> None:
        """Close an open conflict and set baseline pairs, in one transaction: the baselines are
        what make the next sync carry the side the operator took."""
        stamp = now_iso(now)
        with self.atomic():
            rows = self._rows(
                "SELECT sentry_id, tracker_key, field FROM conflicts WHERE id = ? AND resolved_at IS NULL",
                (conflict_id,),
            )
            if not rows:
                raise ValueError(f"no open conflict #{conflict_id}")
            sid, key = rows[0]["sentry_id"], rows[0]["tracker_key"]
            self._put_baselines(sid, baselines, stamp)
            self.db.execute("UPDATE conflicts SET resolved_at = ?, resolution = ? WHERE id = ?",
                            [stamp, resolution, conflict_id])
            self._journal(None, sid, key, JournalEntry(
                "both", rows[0]["field"], "ResolveConflict", resolution, "ok", "resolved by the operator"), stamp)


def intent_followers(row: Mapping[str, Any]) -> frozenset[str]:
    """The followers a create (any of its attempts) asked for."""
    raw = row.get("followers")
    return frozenset(str(v) for v in json.loads(raw)) if raw else frozenset()


def slim_tracker(issue: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys and ids a cycle compares: references shrink to {key} or {id}."""
    slim: dict[str, Any] = {}
    for name in CACHED_TRACKER_FIELDS:
        value = issue.get(name)
        if isinstance(value, Mapping):
            value = {k: value[k] for k in ("key", "id") if k in value}
        elif isinstance(value, list) and all(isinstance(ref, Mapping) for ref in value):
            value = [{"id": ref.get("id")} for ref in value]  # references (followers): their ids
        if name in issue:
            slim[name] = value
    return slim
