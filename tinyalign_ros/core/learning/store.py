"""The adaptation node's durable log: every utterance (features, transcript, confidence, user,
time, the user's correction) and every projector version, per user.

SQLite in WAL mode for the index (a crash mid-write loses at most the row being written) and
one file per utterance's features, written to a temporary name and renamed, so no reader ever
sees half a file. Bounded per user (oldest uncorrected utterances go first). User ids are
checked before they touch a path.
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
"""


class StoreError(RuntimeError):
    pass


@dataclass
class StoreConfig:
    store_dir: str = setting("", "where utterances and projectors are kept; '' = "
                                 "$TINYALIGN_HOME/store (~/.local/share/tinyalign_ros/store)")
    max_utterances_per_user: int = setting(500, "retention: beyond this, a user's oldest "
                                                "uncorrected utterances go first")
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
        self._db.executescript(SCHEMA)

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

    @staticmethod
    def _atomic_write(path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    # ---- utterances
    def log(self, utterance_id: str, user_id: str, features: np.ndarray, transcript: str,
            confidence: float, asr_model_id: str, created: float | None = None) -> None:
        check_user_id(user_id)
        if not utterance_id or "/" in utterance_id or utterance_id.startswith("."):
            raise StoreError(f"invalid utterance id {utterance_id!r}")
        self._check_space()
        path = self.user_dir(user_id) / "features" / f"{utterance_id}.npy"
        self._atomic_write(path, lambda f: np.save(f, np.asarray(features, np.float16)))
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO utterances VALUES (?,?,?,?,?,NULL,?,?,?)",
                (utterance_id, user_id, time.time() if created is None else created,
                 transcript, float(confidence),
                 asr_model_id, int(features.shape[0]), str(path)))
        self._enforce_retention(user_id)

    def _enforce_retention(self, user_id: str) -> None:
        with self._lock:
            rows = self._db.execute(
                "SELECT utterance_id, features_path FROM utterances WHERE user_id=? "
                "ORDER BY (corrected_text IS NOT NULL) DESC, created DESC LIMIT -1 OFFSET ?",
                (user_id, self.max_per_user)).fetchall()
            for uid, path in rows:
                self._db.execute("DELETE FROM utterances WHERE utterance_id=?", (uid,))
                Path(path).unlink(missing_ok=True)

    def correct(self, user_id: str, utterance_id: str, text: str) -> None:
        check_user_id(user_id)
        if not text.strip():
            raise StoreError("empty correction")
        with self._lock:
            cur = self._db.execute(
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

    def users(self) -> list[str]:
        """Every user with logged utterances or projectors, sorted."""
        with self._lock:
            rows = self._db.execute("SELECT user_id FROM utterances UNION "
                                    "SELECT user_id FROM projectors ORDER BY 1").fetchall()
        return [r[0] for r in rows]

    def count(self, user_id: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM utterances WHERE user_id=?",
                                    (check_user_id(user_id),)).fetchone()[0]

    # ---- projectors
    def add_projector(self, user_id: str, version: str, parent_version: str, data: bytes,
                      metrics: dict, make_current: bool) -> Path:
        self._check_space()
        path = self.user_dir(user_id) / "projectors" / f"{version}.safetensors"
        self._atomic_write(path, lambda f: f.write(data))
        with self._lock:
            if make_current:
                self._db.execute("UPDATE projectors SET current=0 WHERE user_id=?", (user_id,))
            self._db.execute("INSERT OR REPLACE INTO projectors VALUES (?,?,?,?,?,?,?)",
                             (version, user_id, parent_version, time.time(), str(path),
                              json.dumps(metrics), int(make_current)))
        return path

    def projectors(self, user_id: str) -> list[ProjectorRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT version, user_id, parent_version, created, path, metrics, current "
                "FROM projectors WHERE user_id=? ORDER BY created", (check_user_id(user_id),)
            ).fetchall()
        return [ProjectorRecord(r[0], r[1], r[2] or "", r[3], Path(r[4]), json.loads(r[5]),
                                bool(r[6])) for r in rows]

    def current_projector(self, user_id: str) -> ProjectorRecord | None:
        cur = [p for p in self.projectors(user_id) if p.current]
        return cur[-1] if cur else None

    def rollback(self, user_id: str) -> ProjectorRecord | None:
        """Make the current projector's parent current again (None: back to the base)."""
        current = self.current_projector(user_id)
        if current is None:
            raise StoreError(f"user {user_id!r} has no adapted projector to roll back")
        parent = next((p for p in self.projectors(user_id)
                       if p.version == current.parent_version), None)
        with self._lock:
            self._db.execute("UPDATE projectors SET current=0 WHERE user_id=?", (user_id,))
            if parent is not None:
                self._db.execute("UPDATE projectors SET current=1 WHERE version=?",
                                 (parent.version,))
        return parent

    def forget(self, user_id: str) -> tuple[int, int]:
        """Delete everything stored about a user; returns (utterances, projectors) deleted."""
        check_user_id(user_id)
        with self._lock:
            n_utt = self._db.execute("DELETE FROM utterances WHERE user_id=?",
                                     (user_id,)).rowcount
            n_proj = self._db.execute("DELETE FROM projectors WHERE user_id=?",
                                      (user_id,)).rowcount
        shutil.rmtree(self.user_dir(user_id), ignore_errors=True)
        return n_utt, n_proj
