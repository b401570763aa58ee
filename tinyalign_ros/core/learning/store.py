"""The adaptation node's durable log: every utterance (features, audio, transcript, confidence,
user, time, the user's correction), every projector version and every recogniser adapter
version, per user.

SQLite in WAL mode for the index (a crash mid-write loses at most the row being written) and
one file per utterance's features (``features/<id>.npy``) and audio (``audio/<id>.wav``, int16,
when the ASR node sent it: recogniser adaptation re-encodes it; an utterance without one, e.g.
from an older store, is simply not used for that), each written to a temporary name and renamed,
so no reader ever sees half a file. Projectors (``projectors`` table, ``projectors/``) and
recogniser adapters (``recognizers`` table, the same columns, ``recognizers/``) have versions, a
current one per user, rollback to the parent and forget. Bounded per user (oldest uncorrected utterances go first). User ids are
checked before they touch a path.

Adaptation jobs are recorded too (``jobs``: running / done / failed / cancelled / abandoned), so
a job whose process was killed is reported as abandoned by the next start (``recover``), and a
job that was cancelled (by rollback or forget-user of its user) can no longer store a
projector. Deleted rows are overwritten (``secure_delete``) and ``forget`` empties the WAL, so a
forgotten user's transcripts do not linger in the database files.
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..settings import setting
from ..users import check_user_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS utterances (
    utterance_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created REAL NOT NULL,
    transcript TEXT NOT NULL,
    confidence REAL NOT NULL,
    corrected_text TEXT,
    asr_model_id TEXT NOT NULL,
    frames INTEGER NOT NULL,
    features_path TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS utterances_user ON utterances(user_id, created);
CREATE TABLE IF NOT EXISTS projectors (
    version TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    parent_version TEXT,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS projectors_user ON projectors(user_id, created);
CREATE TABLE IF NOT EXISTS recognizers (
    version TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    parent_version TEXT,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL,
    current INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS recognizers_user ON recognizers(user_id, created);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user_id, started);
"""
JOB_STATES = ("running", "done", "failed", "cancelled", "abandoned")
# what a user has versions of: table and folder name of each kind
KINDS = {"projector": "projectors", "recognizer": "recognizers"}


class StoreError(RuntimeError):
    pass


@dataclass
class StoreConfig:
    store_dir: str = setting("", "where utterances and projectors are kept; '' = "
                                 "$TINYALIGN_HOME/store (~/.local/share/tinyalign_ros/store)")
    max_utterances_per_user: int = setting(500, "retention: beyond this, a user's oldest "
                                                "uncorrected utterances go first, then the "
                                                "oldest corrected ones; the newest tenth stays")
    min_free_mb: int = setting(200, "stop logging when the disk has less free space than this")

    def path(self) -> Path:
        from ..models import data_dir

        return Path(self.store_dir).expanduser() if self.store_dir else data_dir() / "store"


@dataclass
class LoggedUtterance:
    utterance_id: str
    user_id: str
    created: float
    transcript: str
    confidence: float
    corrected_text: str | None
    asr_model_id: str
    features_path: Path

    @property
    def label(self) -> str:
        return self.corrected_text if self.corrected_text is not None else self.transcript

    def features(self) -> np.ndarray:
        return np.load(self.features_path).astype(np.float32)

    @property
    def audio_path(self) -> Path:
        return audio_path_of(self.features_path)

    @property
    def has_audio(self) -> bool:
        return self.audio_path.is_file()

    def audio(self) -> np.ndarray | None:
        """The utterance's audio as mono float32 at 16 kHz, or None when none was logged."""
        if not self.has_audio:
            return None
        samples, rate = read_wav(self.audio_path)
        audio = samples.astype(np.float32) / 32768.0
        if rate != 16000:
            from ..speech.audio import resample

            audio = resample(audio, rate, 16000)
        return audio


def audio_path_of(features_path: Path) -> Path:
    """users/<user>/features/<id>.npy -> users/<user>/audio/<id>.wav"""
    return features_path.parent.parent / "audio" / (features_path.stem + ".wav")


def check_audio_samples(audio, sample_rate: int) -> np.ndarray:
    """The int16 mono samples of an utterance's audio; StoreError for anything else."""
    a = np.asarray(audio)
    if a.ndim != 1 or a.size == 0:
        raise StoreError(f"audio must be non-empty mono samples, got shape {a.shape}")
    if a.dtype != np.int16:
        raise StoreError(f"audio must be int16 samples, got {a.dtype}")
    if not 8000 <= int(sample_rate) <= 192000:
        raise StoreError(f"audio sample rate {sample_rate} Hz is not plausible (8-192 kHz)")
    return a


def write_wav(f, samples: np.ndarray, sample_rate: int) -> None:
    import wave

    with wave.open(f, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(np.ascontiguousarray(samples, "<i2").tobytes())


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    import wave

    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise StoreError(f"{path}: not a mono 16-bit WAV file")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2"), w.getframerate()


@dataclass
class JobRecord:
    job_id: str
    user_id: str
    started: float
    finished: float | None
    state: str
    message: str


@dataclass
class ProjectorRecord:
    version: str
    user_id: str
    parent_version: str
    created: float
    path: Path
    metrics: dict
    current: bool


class UtteranceStore:
    @classmethod
    def from_config(cls, config: StoreConfig) -> "UtteranceStore":
        return cls(config.path(), config.max_utterances_per_user, config.min_free_mb)

    def __init__(self, root: str | os.PathLike, max_utterances_per_user: int = 500,
                 min_free_mb: int = 50):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_per_user = max_utterances_per_user
        self.min_free_mb = min_free_mb
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.root / "store.sqlite"), check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA secure_delete=ON")    # deleted rows are overwritten, not left
        self._db.executescript(SCHEMA)

    def recover(self) -> tuple[list[JobRecord], list[Path]]:
        """After a start (the node's, not a reader's such as ``tinyalign export``): jobs still
        marked running were in a process that died (kill -9, power loss): they become
        ``abandoned``; temporary files of interrupted writes are removed. Returns both."""
        with self._lock:
            rows = self._db.execute(
                "SELECT job_id, user_id, started, finished, state, message FROM jobs "
                "WHERE state='running' ORDER BY started").fetchall()
            self._db.execute(
                "UPDATE jobs SET state='abandoned', finished=?, message='the process stopped "
                "while the job ran (killed or crashed); the current projector was kept' "
                "WHERE state='running'", (time.time(),))
        removed = []
        users = self.root / "users"
        if users.is_dir():
            for tmp in users.glob("*/*/.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
        return [JobRecord(*r) for r in rows], removed

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def user_dir(self, user_id: str) -> Path:
        return self.root / "users" / check_user_id(user_id)

    def _check_space(self) -> None:
        free_mb = shutil.disk_usage(self.root).free / 1e6
        if free_mb < self.min_free_mb:
            raise StoreError(f"disk nearly full at {self.root}: {free_mb:.0f} MB free "
                             f"(< {self.min_free_mb} MB); not logging")

    def _execute(self, sql: str, args=()):
        """One statement under the lock; SQLite failures (a full disk: 'database or disk is
        full') become StoreError, so callers need to know one error type."""
        with self._lock:
            try:
                return self._db.execute(sql, args)
            except sqlite3.Error as exc:
                raise StoreError(f"store database {self.root / 'store.sqlite'}: {exc}") from exc

    @staticmethod
    def _atomic_write(path: Path, write) -> None:
        """Write to a temporary name, fsync, rename: the real name only ever holds a whole
        file. Any OSError (ENOSPC: disk full) becomes StoreError, the temporary file gone."""
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(exc, OSError):    # ENOSPC, EIO, ...: nothing was left behind
                try:
                    free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
                except OSError:
                    free = "free space unknown"
                raise StoreError(f"could not write {path.name}: {exc.strerror or exc} "
                                 f"({free}); nothing was kept") from exc
            raise

    # ---- utterances
    def log(self, utterance_id: str, user_id: str, features: np.ndarray, transcript: str,
            confidence: float, asr_model_id: str, created: float | None = None,
            audio: np.ndarray | None = None, sample_rate: int = 16000) -> None:
        """``audio``: the utterance's int16 mono samples at ``sample_rate`` (kept as a WAV file
        beside the features, for recogniser adaptation), or None."""
        check_user_id(user_id)
        if not utterance_id or "/" in utterance_id or utterance_id.startswith("."):
            raise StoreError(f"invalid utterance id {utterance_id!r}")
        if audio is not None:
            audio = check_audio_samples(audio, sample_rate)
        self._check_space()
        path = self.user_dir(user_id) / "features" / f"{utterance_id}.npy"
        wav = audio_path_of(path)
        self._atomic_write(path, lambda f: np.save(f, np.asarray(features, np.float16)))
        try:
            if audio is not None:
                self._atomic_write(wav, lambda f: write_wav(f, audio, sample_rate))
            else:
                wav.unlink(missing_ok=True)      # a re-logged id keeps no stale audio
            self._execute(
                "INSERT OR REPLACE INTO utterances VALUES (?,?,?,?,?,NULL,?,?,?)",
                (utterance_id, user_id, time.time() if created is None else created,
                 transcript, float(confidence),
                 asr_model_id, int(features.shape[0]), str(path)))
        except StoreError:
            path.unlink(missing_ok=True)     # no file without its row
            wav.unlink(missing_ok=True)
            raise
        self._enforce_retention(user_id)

    def _enforce_retention(self, user_id: str) -> None:
        """Beyond max_per_user, drops a user's oldest uncorrected utterances first, then their
        oldest corrected ones. The newest tenth of the cap (at least the newest utterance)
        stays whatever its state: its correction may still come. (Dropping the uncorrected
        first with nothing kept back would drop each new utterance on arrival once all the
        older ones are corrected, and the user could never correct new speech.)"""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT utterance_id, features_path, corrected_text IS NOT NULL "
                    "FROM utterances WHERE user_id=? ORDER BY created", (user_id,)).fetchall()
                excess = len(rows) - self.max_per_user
                if excess <= 0:
                    return
                older = rows[:len(rows) - max(1, self.max_per_user // 10)]
                # a stable sort: uncorrected before corrected, each oldest first
                for uid, path, _ in sorted(older, key=lambda r: r[2])[:excess]:
                    self._db.execute("DELETE FROM utterances WHERE utterance_id=?", (uid,))
                    Path(path).unlink(missing_ok=True)
                    audio_path_of(Path(path)).unlink(missing_ok=True)
            except sqlite3.Error as exc:
                raise StoreError(f"store database: {exc} (retention not applied)") from exc

    def correct(self, user_id: str, utterance_id: str, text: str) -> None:
        check_user_id(user_id)
        if not text.strip():
            raise StoreError("empty correction")
        cur = self._execute(
            "UPDATE utterances SET corrected_text=? WHERE utterance_id=? AND user_id=?",
            (text.strip(), utterance_id, user_id))
        if cur.rowcount == 0:
            raise StoreError(f"no logged utterance {utterance_id!r} of user {user_id!r}")

    def utterances(self, user_id: str, min_confidence: float | None = None,
                   corrected_only: bool = False) -> list[LoggedUtterance]:
        """A user's utterances, oldest first: corrected ones, plus uncorrected ones whose ASR
        confidence is at least min_confidence (pseudo-labels) when it is given."""
        check_user_id(user_id)
        with self._lock:
            rows = self._db.execute(
                "SELECT utterance_id, user_id, created, transcript, confidence, corrected_text, "
                "asr_model_id, features_path FROM utterances WHERE user_id=? ORDER BY created",
                (user_id,)).fetchall()
        out = []
        for r in rows:
            u = LoggedUtterance(*r[:7], Path(r[7]))
            if u.corrected_text is None:
                if corrected_only:
                    continue
                if min_confidence is not None and u.confidence < min_confidence:
                    continue
            if u.features_path.is_file():
                out.append(u)
        return out

    # ---- adaptation jobs
    def start_job(self, job_id: str, user_id: str) -> None:
        check_user_id(user_id)
        self._execute("INSERT INTO jobs (job_id, user_id, started, state) VALUES (?,?,?,?)",
                      (job_id, user_id, time.time(), "running"))

    def finish_job(self, job_id: str, state: str, message: str = "") -> None:
        """Record how a running job ended (a job already cancelled keeps that state)."""
        if state not in JOB_STATES or state == "running":
            raise ValueError(f"job state must be one of {JOB_STATES[1:]}, got {state!r}")
        self._execute("UPDATE jobs SET state=?, finished=?, message=? "
                      "WHERE job_id=? AND state='running'",
                      (state, time.time(), message[:500], job_id))

    def job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            row = self._db.execute("SELECT job_id, user_id, started, finished, state, message "
                                   "FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return JobRecord(*row) if row else None

    def jobs(self, user_id: str | None = None) -> list[JobRecord]:
        """Every recorded job (of one user), oldest first."""
        sql = "SELECT job_id, user_id, started, finished, state, message FROM jobs"
        args: tuple = ()
        if user_id is not None:
            sql, args = sql + " WHERE user_id=?", (check_user_id(user_id),)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY started", args).fetchall()
        return [JobRecord(*r) for r in rows]

    def _cancel_jobs(self, user_id: str, why: str) -> None:
        """Under the lock: a running job of the user may no longer store a projector."""
        self._db.execute("UPDATE jobs SET state='cancelled', finished=?, message=? "
                         "WHERE user_id=? AND state='running'", (time.time(), why, user_id))

    def users(self) -> list[str]:
        """Every user with logged utterances or projectors, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT user_id FROM utterances UNION "
                                    "SELECT user_id FROM projectors UNION "
                                    "SELECT user_id FROM recognizers ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def count(self, user_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM utterances WHERE user_id=?",
                                    (check_user_id(user_id),)).fetchone()[0]

    # ---- projectors and recogniser adapters: versions, one current per user, rollback
    @staticmethod
    def _table(kind: str) -> str:
        try:
            return KINDS[kind]
        except KeyError:
            raise StoreError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}") from None

    def add_projector(self, user_id: str, version: str, parent_version: str, data: bytes,
                      metrics: dict, make_current: bool, job_id: str | None = None) -> Path:
        """Store a projector version. With ``job_id`` only while that job is still running: a
        job cancelled by rollback or forget-user of its user stores nothing (checked and
        written under the lock, so forget/rollback and this never interleave)."""
        return self.add_version("projector", user_id, version, parent_version, data, metrics,
                                make_current, job_id)

    def add_recognizer(self, user_id: str, version: str, parent_version: str, data: bytes,
                       metrics: dict, make_current: bool, job_id: str | None = None) -> Path:
        """Store a recogniser adapter version (as ``add_projector``)."""
        return self.add_version("recognizer", user_id, version, parent_version, data, metrics,
                                make_current, job_id)

    def add_version(self, kind: str, user_id: str, version: str, parent_version: str,
                    data: bytes, metrics: dict, make_current: bool,
                    job_id: str | None = None) -> Path:
        table = self._table(kind)
        if not version or "/" in version or version.startswith("."):
            raise StoreError(f"invalid {kind} version {version!r}")
        self._check_space()
        path = self.user_dir(user_id) / table / f"{version}.safetensors"
        with self._lock:
            if job_id is not None:
                row = self._db.execute("SELECT state, message FROM jobs WHERE job_id=?",
                                       (job_id,)).fetchone()
                if row is None or row[0] != "running":
                    why = f"{row[0]}: {row[1]}" if row else "no longer recorded"
                    raise StoreError(f"job {job_id} may not store a {kind} ({why})")
            self._atomic_write(path, lambda f: f.write(data))
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if make_current:
                    self._db.execute(f"UPDATE {table} SET current=0 WHERE user_id=?",
                                     (user_id,))
                self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?,?,?,?,?,?,?)",
                                 (version, user_id, parent_version, time.time(), str(path),
                                  json.dumps(metrics), int(make_current)))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                path.unlink(missing_ok=True)
                raise StoreError(f"store database: {exc}; the {kind} was not kept") from exc
        return path

    def versions(self, kind: str, user_id: str) -> list[ProjectorRecord]:
        """Every stored version of a kind for a user, oldest first."""
        table = self._table(kind)
        with self._lock:
            rows = self._db.execute(
                f"SELECT version, user_id, parent_version, created, path, metrics, current "
                f"FROM {table} WHERE user_id=? ORDER BY created", (check_user_id(user_id),)
            ).fetchall()
        return [ProjectorRecord(r[0], r[1], r[2] or "", r[3], Path(r[4]), json.loads(r[5]),
                                bool(r[6])) for r in rows]

    def current_version(self, kind: str, user_id: str) -> ProjectorRecord | None:
        cur = [p for p in self.versions(kind, user_id) if p.current]
        return cur[-1] if cur else None

    def projectors(self, user_id: str) -> list[ProjectorRecord]:
        return self.versions("projector", user_id)

    def current_projector(self, user_id: str) -> ProjectorRecord | None:
        return self.current_version("projector", user_id)

    def recognizers(self, user_id: str) -> list[ProjectorRecord]:
        return self.versions("recognizer", user_id)

    def current_recognizer(self, user_id: str) -> ProjectorRecord | None:
        return self.current_version("recognizer", user_id)

    def rollback(self, user_id: str, kind: str = "projector") -> ProjectorRecord | None:
        """Make the current version's parent current again (None: back to the base)."""
        table = self._table(kind)
        current = self.current_version(kind, user_id)
        if current is None:
            raise StoreError(f"user {user_id!r} has no adapted {kind} to roll back")
        parent = next((p for p in self.versions(kind, user_id)
                       if p.version == current.parent_version), None)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(f"UPDATE {table} SET current=0 WHERE user_id=?", (user_id,))
                if parent is not None:
                    self._db.execute(f"UPDATE {table} SET current=1 WHERE version=?",
                                     (parent.version,))
                self._cancel_jobs(user_id, f"the user's {kind} was rolled back meanwhile")
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"store database: {exc}; nothing was rolled back") from exc
        return parent

    def forget(self, user_id: str) -> tuple[int, int, int]:
        """Delete everything stored about a user (the utterances' features and audio, every
        projector and recogniser adapter); returns (utterances, projectors, recognisers)
        deleted."""
        check_user_id(user_id)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                # a running job of the user can no longer store (add_projector checks under
                # this lock); then every row of the user goes
                self._cancel_jobs(user_id, "the user was forgotten meanwhile")
                n_utt = self._db.execute("DELETE FROM utterances WHERE user_id=?",
                                         (user_id,)).rowcount
                n_proj = self._db.execute("DELETE FROM projectors WHERE user_id=?",
                                          (user_id,)).rowcount
                n_rec = self._db.execute("DELETE FROM recognizers WHERE user_id=?",
                                         (user_id,)).rowcount
                self._db.execute("DELETE FROM jobs WHERE user_id=?", (user_id,))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"store database: {exc}; nothing was forgotten") from exc
            shutil.rmtree(self.user_dir(user_id), ignore_errors=True)
            # the WAL still holds the deleted rows' old pages: copy back and empty it (a
            # reader, e.g. a running export, can delay that: try a few times)
            for _ in range(20):
                if self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0:
                    break
                time.sleep(0.05)
        return n_utt, n_proj, n_rec
