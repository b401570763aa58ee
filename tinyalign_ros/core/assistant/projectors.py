"""The projectors a responder serves: each user's adapted one, and the base for everyone else.

Thread-safe. A swap never changes a request in flight: callers hold the ``Projector`` they got.
Every projector is checked against the loaded LLM when it enters the table and against the
encoder that made the features of each request (a projector trained on one encoder variant
must not read another's states, even of the same width). A projector that leaves the table
(replaced, removed) is handed to ``on_retire``, so its LLM adapter is freed.
"""
from __future__ import annotations

import threading
from typing import Callable

from .checkpoint import CheckpointError, Projector, check_compatible


class ProjectorTable:
    def __init__(self, llm_model_id: str, device: str = "cpu",
                 check: Callable[[Projector], None] | None = None,
                 on_retire: Callable[[Projector], None] | None = None):
        """``check``: further refusal of a projector (raises ValueError), e.g. a prompt that
        does not fit; ``on_retire``: called with each projector that stops being served."""
        self.llm_model_id, self.device = llm_model_id, device
        self._check, self._on_retire = check, on_retire
        self._lock = threading.Lock()
        self._users: dict[str, Projector] = {}
        self.base: Projector | None = None

    def _admit(self, projector: Projector, source: str) -> Projector:
        check_compatible(projector.meta, None, self.llm_model_id, source=source)
        if self._check is not None:
            try:
                self._check(projector)
            except ValueError as exc:
                raise CheckpointError(f"{source}: {exc}") from exc
        projector.model.eval()
        return projector.to(self.device)

    def _retire(self, projector: Projector | None) -> None:
        if projector is not None and self._on_retire is not None:
            self._on_retire(projector)

    def set_base(self, projector: Projector, source: str = "base projector") -> None:
        projector = self._admit(projector, source)
        with self._lock:
            old, self.base = self.base, projector
        if old is not projector:
            self._retire(old)

    def put(self, user_id: str, projector: Projector, source: str = "projector update") -> None:
        """Serve ``projector`` to ``user_id`` from now on (CheckpointError if it does not fit)."""
        projector = self._admit(projector, source)
        with self._lock:
            old = self._users.get(user_id)
            self._users[user_id] = projector
        if old is not None and old is not projector:
            self._retire(old)

    def remove(self, user_id: str) -> bool:
        """Back to the base projector; True when the user had one of their own."""
        with self._lock:
            old = self._users.pop(user_id, None)
        self._retire(old)
        return old is not None

    def get(self, user_id: str) -> Projector | None:
        """The user's projector, else the base (None when there is no base either)."""
        with self._lock:
            return self._users.get(user_id) or self.base

    def for_features(self, user_id: str, asr_model_id: str) -> Projector | None:
        """The projector for a request whose features ``asr_model_id`` made; CheckpointError
        when that projector was trained on another encoder."""
        projector = self.get(user_id)
        if projector is not None:
            check_compatible(projector.meta, asr_model_id, None,
                             source=f"projector {projector.version} of {user_id!r}")
        return projector

    def clear(self) -> None:
        with self._lock:
            gone = list(self._users.values()) + ([self.base] if self.base else [])
            self._users.clear()
            self.base = None
        for projector in gone:
            self._retire(projector)
