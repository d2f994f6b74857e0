"""Rate and connection limits (C11). Neither python-socketio nor python-engineio limits
anything, so every bound a flood could push against lives here."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Final


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second up to `burst`; `take()` spends one if there is one."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(init=False, default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ConnectionCaps:
    """Open connections, per client address and in total. `exempt` addresses (the
    configured proxies, where every client arrives from) count in the total only."""

    def __init__(
        self, *, total: int, per_address: int, exempt: frozenset[str] = frozenset()
    ) -> None:
        self._total, self._per_address, self._exempt = total, per_address, exempt
        self._open: Counter[str] = Counter()
        self._count = 0

    def acquire(self, address: str) -> str | None:
        """Count a new connection from `address`; the reason it is refused, if it is."""
        if self._count >= self._total:
            return "total_cap"
        if self._open[address] >= self._per_address and address not in self._exempt:
            return "address_cap"
        self._open[address] += 1
        self._count += 1
        return None

    def release(self, address: str) -> None:
        self._count -= 1
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]


class AcceptCaps:
    """TCP connections as they are accepted (see listener.py): the open ones capped as
    `ConnectionCaps` does, and new ones per address paid from a token bucket (configured
    proxies exempt)."""

    # Buckets of addresses seen recently; the oldest are forgotten past this many.
    MAX_TRACKED: Final = 100_000

    def __init__(
        self,
        *,
        total: int,
        per_address: int,
        rate: float,
        burst: float,
        exempt: frozenset[str] = frozenset(),
    ) -> None:
        self._caps = ConnectionCaps(total=total, per_address=per_address, exempt=exempt)
        self._rate, self._burst, self._exempt = rate, burst, exempt
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def admit(self, address: str) -> str | None:
        """Count a new connection from `address`; the reason it is refused, if it is."""
        reason = self._caps.acquire(address)
        if reason is None and address not in self._exempt and not self._bucket(address).take():
            self._caps.release(address)
            reason = "address_rate"
        return reason

    def release(self, address: str) -> None:
        self._caps.release(address)

    def _bucket(self, address: str) -> TokenBucket:
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(rate=self._rate, burst=self._burst)
            if len(self._buckets) > self.MAX_TRACKED:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(address)
        return bucket
