"""Several nodes on one message queue (C07, C11, C19): Redis through python-socketio's own
`AsyncRedisManager`, when `MESSAGE_QUEUE_URL` names one.

The manager shares what python-socketio shares (emits to rooms, to a sid or to all, room
changes and disconnects of a sid on another node). This module adds what the service needs
on top, on the same channel and under keys `<channel>:*`:

- revocations: a deny-list in Redis (a sorted set, subject -> time, pruned after
  `REVOCATION_TTL_SECONDS`; Redis's AOF keeps it across restarts), announced to every
  node at once; a revocation made while the queue is lost is kept and shared when it is
  back; each (re)subscription reads the whole list again, and every node ends the local
  sessions it now refuses;
- the per-subject session cap counted across nodes (a sorted set per subject of leases
  that each node renews; a dead node's leases lapse);
- bounded waits: no handler waits on the queue longer than `MESSAGE_QUEUE_TIMEOUT_SECONDS`
  (python-socketio would wait on redis-py's 5 s socket timeout, twice); while the queue is
  lost, publishing is skipped at once, local delivery goes on, and the cap falls back to
  each node's own count;
- liveness: every node publishes a heartbeat each second and must hear its own; three
  seconds without one, or a refused or broken connection, and the queue is lost
  (`queue_lost` in the security log, `/healthz` says degraded) until a heartbeat comes
  back (`queue_restored`). A missed deadline alone drops that one operation: a busy node
  misses deadlines with a healthy queue.
  The listener resubscribes after 0.1 s, doubling to at most 1 s (python-socketio's own
  doubles to 60 s), so delivery resumes within seconds of Redis's return.

Pub/sub delivers at most once: events published while the queue is lost are dropped, and
counted in `queue_restored`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, cast
from urllib.parse import SplitResult, urlsplit

import redis.asyncio
import socketio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from . import seclog
from .revocations import Revocations
from .settings import ENV_PREFIX, Finding, Settings

HEARTBEAT_SECONDS: Final = 1.0
LOST_AFTER_SECONDS: Final = 3.0
RETRY_FIRST_SECONDS: Final = 0.1
RETRY_MAX_SECONDS: Final = 1.0
# Connecting, resynchronizing and renewing leases run in the background, never in a handler.
BACKGROUND_SECONDS: Final = 5.0
STARTUP_SYNC_SECONDS: Final = 5.0
LEASE_SECONDS: Final = 30.0
TLS_SCHEMES: Final = frozenset({"rediss", "valkeys"})
PLAIN_SCHEMES: Final = frozenset({"redis", "valkey"})
# Our own messages on the channel; python-socketio ignores methods it does not know, and
# never sees these (QueueManager takes them out first).
HEARTBEAT: Final = "app.heartbeat"
REVOKE: Final = "app.revoke"

LOGGER: Final = logging.getLogger(__name__)

RevokedHandler = Callable[[str], Awaitable[object]]
# Whether a session (namespace, sid) is open on this node.
IsOpen = Callable[[str, str], bool]


class QueueRefused(Exception):
    """The queue answered but refused this node (credentials, permissions, certificate):
    a configuration error, not an outage. The message says what to fix, without secrets."""


def redacted(url: str) -> str:
    """The URL with its password replaced: what `check` and the logs may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def _parts(settings: Settings) -> SplitResult | None:
    url = settings.message_queue_url
    return None if url is None else urlsplit(url.get_secret_value())


def queue_findings(settings: Settings) -> list[Finding]:
    """What is unsafe about the queue settings (C19); production refuses plaintext, the
    default user and a queue without a CA."""
    parts = _parts(settings)
    if parts is None:
        if settings.message_queue_ca_file is not None:
            return [_unused("message_queue_ca_file", "it is read only with MESSAGE_QUEUE_URL")]
        return []
    setting = "message_queue_url"
    # REVOCATIONS_FILE is not read with a queue (the deny-list lives in Redis); `check` says
    # so. It is no finding: init-dev sets it, and a project that grows into several nodes
    # keeps its .env.
    found: list[Finding] = []
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        host = None
    if parts.scheme not in TLS_SCHEMES | PLAIN_SCHEMES or not host:
        return [
            *found,
            Finding(
                "message_queue_url_invalid",
                setting,
                "use rediss://{user}:{password}@{host}:{port}/{db} (or valkeys://)",
            ),
        ]
    if parts.scheme in PLAIN_SCHEMES and (settings.is_production or not _is_loopback(host)):
        found.append(
            Finding(
                "message_queue_plaintext",
                setting,
                f"{parts.scheme}:// is not encrypted: use {parts.scheme}s:// "
                "(development allows it on loopback only)",
            )
        )
    if settings.is_production and parts.username in {None, "", "default"}:
        found.append(
            Finding(
                "message_queue_default_user",
                setting,
                "name the nodes' own ACL user (rediss://{user}:{password}@...); "
                "the default user must be off",
            )
        )
    if settings.is_production and not parts.password:
        found.append(Finding("message_queue_password_missing", setting, "the URL has no password"))
    ca_file = settings.message_queue_ca_file
    if parts.scheme in TLS_SCHEMES:
        if ca_file is None and settings.is_production:
            found.append(
                Finding(
                    "message_queue_ca_missing",
                    "message_queue_ca_file",
                    "set the CA file that signed the queue's certificate",
                )
            )
        elif ca_file is not None and not ca_file.is_file():
            found.append(
                Finding(
                    "message_queue_ca_unreadable", "message_queue_ca_file", f"cannot read {ca_file}"
                )
            )
    return found


def _unused(setting: str, why: str) -> Finding:
    return Finding(f"{setting}_unused", setting, f"{why}: remove it")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(settings: Settings) -> str:
    """The queue as `check` shows it, password redacted."""
    url = settings.message_queue_url
    if url is None:
        return "(none: one process)"
    ca = settings.message_queue_ca_file
    return (
        f"{redacted(url.get_secret_value())}, channel {settings.message_queue_channel}, "
        f"CA {ca or '(system)'}, wait at most {settings.message_queue_timeout_seconds:g} s"
    )


def client(settings: Settings) -> redis.asyncio.Redis:
    """A Redis client for the queue: the URL's user and password, the CA, no retries of
    its own (every wait here has its own deadline)."""
    url = settings.message_queue_url
    if url is None:
        raise ValueError("no message queue configured")
    ca_file = settings.message_queue_ca_file
    parts = urlsplit(url.get_secret_value())
    options: dict[str, Any] = {
        "socket_connect_timeout": BACKGROUND_SECONDS,
        "socket_timeout": BACKGROUND_SECONDS,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if parts.scheme in TLS_SCHEMES and ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    # redis-py reads redis(s):// only; valkey's own client is not a dependency.
    scheme = {"valkeys": "rediss", "valkey": "redis"}.get(parts.scheme, parts.scheme)
    return redis.asyncio.Redis.from_url(parts._replace(scheme=scheme).geturl(), **options)


async def preflight(settings: Settings) -> str | None:
    """Ask the queue, before serving, whether it accepts this node: `QueueRefused` when it
    refuses (wrong password, missing permission, certificate not trusted); a warning when
    it does not answer (the node then serves degraded until it does); None when all is well."""
    queue = client(settings)
    channel = settings.message_queue_channel
    try:
        async with asyncio.timeout(BACKGROUND_SECONDS):
            await queue.ping()
            await queue.publish(channel, json.dumps({"method": "app.preflight"}))
            await queue.zcard(_revocations_key(channel))
    except AuthenticationError:
        raise QueueRefused(
            f"the message queue refused the user or password of {ENV_PREFIX}MESSAGE_QUEUE_URL"
        ) from None
    except NoPermissionError as exc:
        raise QueueRefused(
            f"the message queue's user lacks a permission ({exc}): grant what deploy/ lists"
        ) from None
    except (RedisError, OSError, TimeoutError) as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            raise QueueRefused(
                "the message queue's certificate is not signed by "
                f"{ENV_PREFIX}MESSAGE_QUEUE_CA_FILE (or names another host)"
            ) from None
        return (
            f"message queue unreachable ({type(exc).__name__}): serving degraded until it answers"
        )
    finally:
        with contextlib.suppress(Exception):
            await queue.aclose()
    return None


def _revocations_key(channel: str) -> str:
    return f"{channel}:revoked"


class Cluster:
    """This node's part of the cluster: the queue's state, revocations and session leases."""

    def __init__(self, settings: Settings, revocations: Revocations) -> None:
        self._revocations = revocations
        self._timeout = settings.message_queue_timeout_seconds
        self._channel = settings.message_queue_channel
        self._redis = client(settings)
        self.host_id = uuid.uuid4().hex
        self.manager = QueueManager(self)
        self._on_revoked: RevokedHandler | None = None
        self._is_open: IsOpen = lambda _namespace, _sid: True
        self._pending: dict[str, float] = {}  # revocations not yet in Redis
        self._claims: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, sid) -> key, member
        self._releasing: set[tuple[str, str]] = set()  # key, member: being removed
        self._lost_since: float | None = None
        self._last_echo = time.monotonic()
        self._subscribed_at: float | None = None
        self._dropped = 0
        self._synced = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ state

    @property
    def up(self) -> bool:
        return self._lost_since is None and self._synced.is_set()

    def health(self) -> dict[str, str]:
        return {"queue": "up" if self.up else "down"}

    def _lost(self, reason: str, exc: BaseException | None = None) -> None:
        if self._lost_since is not None:
            return
        self._lost_since = time.monotonic()
        seclog.event(
            "queue_lost",
            level=logging.WARNING,
            reason=reason,
            error=type(exc).__name__ if exc else None,
        )

    def _heard_own_heartbeat(self) -> None:
        self._last_echo = time.monotonic()
        if self._lost_since is not None:
            after = self._last_echo - self._lost_since
            self._lost_since = None
            seclog.event("queue_restored", after=f"{after:.1f}s", dropped=self._dropped)
            self._dropped = 0
            self._spawn(self._share_pending())
            self._spawn(self._resync())

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, server: socketio.AsyncServer, on_revoked: RevokedHandler, is_open: IsOpen
    ) -> None:
        """Join the queue (at the app's startup): the listener, the heartbeat, the lease
        renewal; wait a few seconds for the first synchronization of the deny-list."""
        self._on_revoked, self._is_open = on_revoked, is_open
        server.manager_initialized = True  # python-socketio would wait for a first client
        self.manager.initialize()
        self._spawn(self._heartbeat())
        self._spawn(self._renew_leases())
        try:
            await asyncio.wait_for(self._synced.wait(), STARTUP_SYNC_SECONDS)
        except TimeoutError:
            self._lost("unreachable_at_startup")

    async def stop(self) -> None:
        """Leave the queue (at shutdown, after the connections closed): this node's leases
        go at once, so that clients reconnecting to other nodes (a rolling restart) are
        not counted twice until the leases lapse."""
        for task in list(self._tasks):
            task.cancel()
        thread = getattr(self.manager, "thread", None)
        if thread is not None:
            thread.cancel()
        leases = self._releasing | set(self._claims.values())
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(4 * self._timeout):
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, member in leases:
                        pipe.zrem(key, member)
                    await pipe.execute()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._redis.aclose(), self._timeout)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ publish

    async def _attempt(
        self, operation: Awaitable[Any], seconds: float, reason: str
    ) -> tuple[bool, Any]:
        """Run one queue operation within `seconds`: (done, its result).

        A refused or broken connection marks the queue lost at once. A deadline passed
        fails this operation only: a node that was slow itself (a busy CPU) passes
        deadlines while the queue is healthy, and calling the queue lost then would drop
        every message for a second or more (seen under load). A queue that stopped
        answering is the heartbeat's to find."""
        try:
            # asyncio.timeout() rather than wait_for(), which makes a task per call on 3.11.
            async with asyncio.timeout(seconds):
                return True, await operation
        except TimeoutError:
            return False, None
        except (RedisError, OSError) as exc:
            self._lost(reason, exc)
            return False, None

    async def publish(self, message: dict[str, Any]) -> bool:
        """Publish within the deadline; skipped at once while the queue is lost."""
        if self._lost_since is None:
            sent, _ = await self._attempt(
                self._redis.publish(self._channel, json.dumps(message)),
                self._timeout,
                "publish_failed",
            )
            if sent:
                return True
        self._dropped += 1
        return False

    async def _heartbeat(self) -> None:
        """Each second: publish a heartbeat (it may take up to LOST_AFTER_SECONDS), judge
        the silence, and share what revocations a missed deadline left pending."""
        beat = json.dumps({"method": HEARTBEAT, "host_id": self.host_id})
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            sent, _ = await self._attempt(
                self._redis.publish(self._channel, beat), LOST_AFTER_SECONDS, "publish_failed"
            )
            if time.monotonic() - self._last_echo > LOST_AFTER_SECONDS:
                self._lost("no_heartbeat")
                listening = self._subscribed_at is not None and (
                    time.monotonic() - self._subscribed_at > LOST_AFTER_SECONDS
                )
                if sent and listening:
                    # Publishing works but nothing comes back: the subscription is dead
                    # without having noticed (a half-open connection). Start it again.
                    self._restart_listener()
            elif self._pending and self._lost_since is None:
                await self._share_pending()

    def _restart_listener(self) -> None:
        thread = getattr(self.manager, "thread", None)
        if thread is not None:
            thread.cancel()
        self._subscribed_at = None
        self.manager.thread = self.manager.server.start_background_task(self.manager._thread)

    # ------------------------------------------------------------------ listen

    async def listen(self) -> AsyncIterator[dict[str, Any]]:
        """Messages of the channel for python-socketio, ours taken out; resubscribes after
        0.1 s, doubling to 1 s, for as long as it takes."""
        delay = RETRY_FIRST_SECONDS
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await asyncio.wait_for(pubsub.subscribe(self._channel), BACKGROUND_SECONDS)
                delay = RETRY_FIRST_SECONDS
                self._subscribed_at = time.monotonic()
                self._spawn(self._resync())
                async for message in pubsub.listen():
                    data = self._decode(message)
                    if data is not None:
                        yield data
            except (RedisError, OSError, TimeoutError) as exc:
                self._subscribed_at = None
                self._lost("subscription_lost", exc)
            finally:
                with contextlib.suppress(Exception):
                    # redis-py's PubSub.aclose() has no annotations.
                    await asyncio.wait_for(pubsub.aclose(), self._timeout)  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_SECONDS)

    def _decode(self, message: object) -> dict[str, Any] | None:
        if not isinstance(message, dict) or message.get("type") != "message":
            return None
        try:
            data = json.loads(message["data"])
        except (ValueError, TypeError, KeyError):
            return None
        if not isinstance(data, dict):
            return None
        method = data.get("method")
        if method == HEARTBEAT:
            if data.get("host_id") == self.host_id:
                self._heard_own_heartbeat()
            return None
        if method == REVOKE:
            if data.get("host_id") != self.host_id:
                self._spawn(self._apply(data.get("sub"), data.get("at")))
            return None
        if isinstance(method, str) and method.startswith("app."):
            return None
        return data

    # ------------------------------------------------------------------ revocations

    async def share_revocation(self, sub: str, at: float) -> bool:
        """Store a revocation in Redis and announce it to every node; kept for the
        heartbeat to share (and False) while the queue is lost or past the deadline."""
        self._pending[sub] = max(at, self._pending.get(sub, 0.0))
        if self._lost_since is not None:
            return False
        shared, _ = await self._attempt(
            self._store(sub, self._pending[sub]), self._timeout, "publish_failed"
        )
        return shared

    async def _share_pending(self) -> None:
        for sub, at in list(self._pending.items()):
            shared, _ = await self._attempt(
                self._store(sub, at), BACKGROUND_SECONDS, "publish_failed"
            )
            if not shared:
                return

    async def _store(self, sub: str, at: float) -> None:
        key = _revocations_key(self._channel)
        ttl = int(self._revocations.ttl) + 1
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {sub: at}, gt=True)
            pipe.zremrangebyscore(key, "-inf", time.time() - ttl)
            pipe.expire(key, ttl)
            pipe.publish(
                self._channel,
                json.dumps({"method": REVOKE, "sub": sub, "at": at, "host_id": self.host_id}),
            )
            await pipe.execute()
        if self._pending.get(sub) == at:
            del self._pending[sub]

    async def _resync(self) -> None:
        """After each (re)subscription and when the queue is back: read the whole
        deny-list and end the local sessions it now refuses. (What was revoked here
        meanwhile the heartbeat shares, see `_share_pending`.)"""
        try:
            async with asyncio.timeout(BACKGROUND_SECONDS):
                since = time.time() - self._revocations.ttl
                entries = await self._redis.zrangebyscore(
                    _revocations_key(self._channel), since, "+inf", withscores=True
                )
        except (RedisError, OSError, TimeoutError) as exc:
            self._lost("resync_failed", exc)
            return
        self._synced.set()
        # withscores=True: (member, score) pairs, which redis-py's annotations do not say.
        for member, score in cast("list[tuple[bytes | str, float]]", entries):
            await self._apply(member.decode() if isinstance(member, bytes) else member, score)

    async def _apply(self, sub: object, at: object) -> None:
        if not isinstance(sub, str) or not isinstance(at, int | float):
            return
        if self._revocations.record(sub, float(at)) and self._on_revoked is not None:
            await self._on_revoked(sub)

    # ------------------------------------------------------------------ session cap

    async def claim(self, namespace: str, sub: str, sid: str, cap: int) -> bool | None:
        """Count a new session of `sub` across nodes: False over the cap, None when the
        queue cannot say within the deadline (the node's own count then decides)."""
        key = f"{self._channel}:sessions:{namespace}:{sub}"
        member = f"{self.host_id}:{sid}"
        self._claims[(namespace, sid)] = (key, member)
        if self._lost_since is not None:
            return None
        counted, count = await self._attempt(
            self._count(key, member), self._timeout, "claim_failed"
        )
        return int(count) <= cap if counted else None

    async def _count(self, key: str, member: str) -> int:
        """Add this session's lease, drop lapsed ones, and count the subject's sessions."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.zadd(key, {member: now + LEASE_SECONDS})
            pipe.zcard(key)
            pipe.expire(key, int(2 * LEASE_SECONDS))
            results = await pipe.execute()
        return int(results[2])

    def release(self, namespace: str, sid: str) -> None:
        claim = self._claims.pop((namespace, sid), None)
        if claim is not None and self._lost_since is None:
            self._releasing.add(claim)
            self._spawn(self._unclaim(*claim))

    async def _unclaim(self, key: str, member: str) -> None:
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._redis.zrem(key, member), BACKGROUND_SECONDS)
            self._releasing.discard((key, member))

    async def _renew_leases(self) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            # A claim of a session that never opened (its client left while it connected)
            # is not renewed: it lapses, as a dead node's do.
            for namespace, sid in [claim for claim in self._claims if not self._is_open(*claim)]:
                self.release(namespace, sid)
            if self._lost_since is not None or not self._claims:
                continue
            by_key: defaultdict[str, dict[str, float]] = defaultdict(dict)
            expires = time.time() + LEASE_SECONDS
            for key, member in self._claims.values():
                by_key[key][member] = expires
            await self._attempt(self._renew(by_key), BACKGROUND_SECONDS, "renewal_failed")

    async def _renew(self, leases: dict[str, dict[str, float]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, members in leases.items():
                pipe.zadd(key, members)
                pipe.expire(key, int(2 * LEASE_SECONDS))
            await pipe.execute()


class QueueManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """python-socketio's Redis manager with this module's publishing (bounded, skipped
    while lost) and listening (fast resubscription, our messages taken out).

    Upstream: python-socketio `async_redis_manager.py`, `AsyncRedisManager._publish()` and
    `_listen()`, which `AsyncPubSubManager._thread()` and its emit/disconnect/room methods
    call; re-verify on a python-socketio bump (pyproject.toml pins the verified range).
    """

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(url="redis://", channel=cluster._channel)
        self._cluster = cluster
        self.host_id = cluster.host_id

    async def _publish(self, data: Any) -> None:
        await self._cluster.publish(data)

    async def _listen(self) -> AsyncIterator[Any]:
        async for message in self._cluster.listen():
            yield message
