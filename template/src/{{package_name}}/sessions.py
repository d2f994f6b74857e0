"""Live sessions: who each connection is, its event budget, and when its token expires.

Kept in one registry rather than python-socketio's session store so that expiry timers,
rate buckets and the subject index (for revocation) are found in one place and dropped
together on disconnect.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from .auth import Identity
from .limits import TokenBucket


@dataclass(slots=True)
class Session:
    sid: str
    identity: Identity
    events: TokenBucket | None
    strikes: int = 0
    conn: int = 0  # the connection's number in the security log
    opened_at: float = field(default_factory=time.time)
    last_event: float = field(default_factory=time.monotonic)
    expiry: asyncio.TimerHandle | None = field(default=None, repr=False)
    idle: asyncio.TimerHandle | None = field(default=None, repr=False)
    # Rooms joined through the event handlers. The Socket.IO server knows them too, but
    # asking it (`sio.rooms(sid)`) scans every room of the namespace, one per connection.
    rooms: set[str] = field(default_factory=set, repr=False)


class Sessions:
    def __init__(self) -> None:
        self._by_sid: dict[str, Session] = {}
        self._by_sub: defaultdict[str, set[str]] = defaultdict(set)

    def open(
        self, sid: str, identity: Identity, events: TokenBucket | None, conn: int = 0
    ) -> Session:
        session = Session(sid=sid, identity=identity, events=events, conn=conn)
        self._by_sid[sid] = session
        self._by_sub[identity.sub].add(sid)
        return session

    def get(self, sid: str) -> Session | None:
        return self._by_sid.get(sid)

    def close(self, sid: str) -> Session | None:
        session = self._by_sid.pop(sid, None)
        if session is not None:
            for timer in (session.expiry, session.idle):
                if timer is not None:
                    timer.cancel()
            sids = self._by_sub[session.identity.sub]
            sids.discard(sid)
            if not sids:
                del self._by_sub[session.identity.sub]
        return session

    def sids_of(self, sub: str) -> list[str]:
        return sorted(self._by_sub.get(sub, ()))

    def __len__(self) -> int:
        return len(self._by_sid)
