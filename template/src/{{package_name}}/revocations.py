"""The deny-list of revoked subjects (C07).

`revoke` refuses a subject's tokens issued at or before the revocation, for
`REVOCATION_TTL_SECONDS` (at least the longest token lifetime, so that no token revoked
outlives its revocation). Every check reads this process's copy, in memory: a connect never
waits on a file or a queue.

Where the list outlives the process:
- one node with `REVOCATIONS_FILE`: a JSON file, rewritten atomically (temporary file,
  fsync, rename) after each revocation and read at startup;
- several nodes: Redis, shared through the message queue (cluster.py), which also feeds
  revocations made elsewhere into `record()`;
- neither: memory only, forgotten at a restart (`check` warns).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Final

from .auth import Identity, is_subject
from .settings import ENV_PREFIX, Finding, Settings

FILE_VERSION: Final = 1
# A revocation stamped later than this past our clock comes from a skewed clock: it is kept
# as if made now, so that it cannot refuse the subject's future tokens for ever.
MAX_SKEW_SECONDS: Final = 60.0


class RevocationsFileError(Exception):
    """The revocations file cannot be read; the message says why, never its content."""


class Revocations:
    def __init__(self, ttl: float, file: Path | None = None) -> None:
        self._ttl = ttl
        self._file = file
        self._revoked: dict[str, float] = {}
        self._lock = asyncio.Lock()
        if file is not None:
            self._revoked = _read(file, ttl)

    @property
    def ttl(self) -> float:
        return self._ttl

    def refuses(self, identity: Identity) -> bool:
        revoked_at = self._revoked.get(identity.sub)
        if revoked_at is None:
            return False
        if time.time() - revoked_at > self._ttl:
            del self._revoked[identity.sub]
            return False
        return identity.issued_at <= revoked_at

    def record(self, sub: str, at: float) -> bool:
        """Merge one revocation (made here or on another node); the latest one wins.
        Whether it changed anything: a revocation heard twice is applied once."""
        now = time.time()
        at = min(at, now + MAX_SKEW_SECONDS)
        if not is_subject(sub) or now - at > self._ttl or self._revoked.get(sub, -1.0) >= at:
            return False
        self._revoked[sub] = at
        return True

    def items(self) -> dict[str, float]:
        """The revocations still in force, by subject."""
        now = time.time()
        return {sub: at for sub, at in self._revoked.items() if now - at <= self._ttl}

    async def save(self) -> None:
        """Write the file, when there is one (off the event loop; one writer at a time)."""
        if self._file is None:
            return
        async with self._lock:
            await asyncio.to_thread(_write, self._file, self.items())


def file_of(settings: Settings) -> Path | None:
    """The file one node keeps its deny-list in; none with a queue (Redis keeps it)."""
    return None if settings.message_queue_url is not None else settings.revocations_file


def findings(settings: Settings) -> list[Finding]:
    """A revocations file that cannot be read would be a deny-list silently emptied."""
    path = file_of(settings)
    if path is None:
        return []
    try:
        _read(path, settings.revocation_ttl_seconds)
    except RevocationsFileError as exc:
        return [Finding("revocations_file_unreadable", "revocations_file", str(exc))]
    return []


def warnings(settings: Settings) -> list[str]:
    if (
        settings.is_production
        and settings.message_queue_url is None
        and (settings.revocations_file is None)
    ):
        return [
            "revocations live in memory only and are forgotten at a restart: set "
            f"{ENV_PREFIX}REVOCATIONS_FILE (one node) or {ENV_PREFIX}MESSAGE_QUEUE_URL (several)"
        ]
    return []


def _read(path: Path, ttl: float) -> dict[str, float]:
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        revoked = document["revoked"] if document.get("version") == FILE_VERSION else None
    except (OSError, ValueError, AttributeError, KeyError) as exc:
        raise RevocationsFileError(f"cannot read {path}: {type(exc).__name__}") from None
    if not isinstance(revoked, dict) or not all(
        is_subject(sub) and isinstance(at, int | float) for sub, at in revoked.items()
    ):
        raise RevocationsFileError(f"cannot read {path}: not a revocations file")
    now = time.time()
    return {sub: float(at) for sub, at in revoked.items() if now - at <= ttl}


def _write(path: Path, revoked: dict[str, float]) -> None:
    """Replace `path` atomically: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": FILE_VERSION, "revoked": revoked}, sort_keys=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
    logging.getLogger(__name__).debug("revocations saved count=%d", len(revoked))
