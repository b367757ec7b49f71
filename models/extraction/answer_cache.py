"""A model's answers kept by what was asked, so a text is never paid for twice.

A local LLM costs seconds per text on a CPU. :func:`cached` wraps any :class:`~.llm.ChatModel` so
that each answer (and each choice-probability reading) is stored under a hash of the model's
identity, the whole conversation and the decoding schema. A new prompt, schema or model therefore
misses the cache by construction; a run that stops half-way (a crash in scoring, a killed night)
resumes where it stopped, and a nightly teacher labels only texts it has not labelled before.

The store is one SQLite file in WAL mode: safe for several processes on one host. A cluster shares
answers through the teacher's label table in the lake (``batch.distill``), not through this file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybridrec.models.extraction.llm import ChatModel, ChoiceScorer, Message


ASK_AT_ONCE = 4  # conversations sent to the model together (an HTTP backend's requests in flight)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class AnswerStore:
    """key → answer text, committed after every write (a crash loses at most the answer in flight)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put(self, key: str, answer: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO answers (key, answer) VALUES (?, ?)", (key, answer))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])


class CachedChatModel:
    """The wrapped model's answers, asked only for conversations not answered before. Empty answers (a
    failed call) are not kept, so they are asked again next time."""

    def __init__(self, model: ChatModel, store: AnswerStore):
        self.model = model
        self.store = store
        self.name = model.name
        self.identity = getattr(model, "identity", model.name)
        self.hits = self.misses = 0

    def complete(self, conversations: Sequence[list[Message]], schema: dict[str, Any] | None = None) -> list[str]:
        keys = [_key(self.identity, "complete", conversation, schema) for conversation in conversations]
        answers: list[str | None] = [self.store.get(k) for k in keys]
        missing = [i for i, a in enumerate(answers) if a is None]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        for start in range(0, len(missing), ASK_AT_ONCE):  # small groups: batching kept, little lost to a crash
            group = missing[start: start + ASK_AT_ONCE]
            for i, answer in zip(group, self.model.complete([conversations[i] for i in group], schema)):
                if answer:
                    self.store.put(keys[i], answer)
                answers[i] = answer
        return [a or "" for a in answers]


class CachedChoiceScorer(CachedChatModel):
    """Also caches :meth:`choice_probabilities` of a model that can score choices."""

    def choice_probabilities(self, conversation: list[Message], answer_prefix: str,
                             choices: Sequence[str]) -> dict[str, float]:
        key = _key(self.identity, "choices", conversation, answer_prefix, list(choices))
        if (kept := self.store.get(key)) is not None:
            self.hits += 1
            return json.loads(kept)
        self.misses += 1
        probabilities = self.model.choice_probabilities(conversation, answer_prefix, choices)  # type: ignore[attr-defined]
        self.store.put(key, json.dumps(probabilities))
        return probabilities


def cached(model: ChatModel, path: Path) -> CachedChatModel:
    """``model`` behind the answer store at ``path``; still a :class:`ChoiceScorer` when the model is one."""
    store = AnswerStore(path)
    return CachedChoiceScorer(model, store) if isinstance(model, ChoiceScorer) else CachedChatModel(model, store)
