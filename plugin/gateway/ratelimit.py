"""Abuse limits: per API key, per webhook source, and per client IP for failed authentications.

Counters are the maintained ``limits`` library's sliding-window counters (smooth like a token
bucket, without a burst at each window's edge), in memory by default or in Redis
(``DESKPILOT_RATE_LIMIT_STORAGE_URL=redis://...``) when several gateway processes share them.

The failed-authentication limit is tested before a key is looked up in the database, so a
flood of wrong keys or forged webhook signatures from one address costs a counter read, not a
query. If the counter store fails (Redis down), requests are let through and a warning logged:
a limit is a defence against abuse, not a reason for an outage.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from deskpilot.config import Settings
from deskpilot.errors import ConfigError, DeskpilotError

logger = logging.getLogger("deskpilot.gateway")

_WARN_EVERY_S = 60.0


class RateLimitedError(DeskpilotError):  # type: ignore[misc,unused-ignore]
    """429; ``retry_after`` (seconds) becomes the Retry-After header."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, hint: str | None = None, retry_after: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = max(1, retry_after)


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit: what it counts, its rate, and the setting that changes it."""

    scope: str
    item: RateLimitItem
    setting: str

    def describe(self) -> str:
        return f"{self.item.amount} per {self.item.multiples} {self.item.GRANULARITY.name}"


def parse_limit(scope: str, value: str, setting: str) -> Limit | None:
    """``"600/minute"`` -> a Limit; ``""`` or ``"0"`` -> None (disabled)."""
    text = (value or "").strip()
    if text in ("", "0"):
        return None
    try:
        item = parse(text)
    except ValueError:
        item = None
    if item is None or item.amount < 1:
        raise ConfigError(
            f"{setting}={value!r} is not a rate limit",
            hint='write it like "600/minute" or "10/second"; "0" or "" disables it',
        )
    return Limit(scope, item, setting)


def storage_uri(url: str) -> str:
    """Our setting names the store; ``limits`` wants its asyncio flavour of it."""
    url = (url or "memory://").strip()
    if url.startswith("async+"):
        return url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        raise ConfigError(
            f"DESKPILOT_RATE_LIMIT_STORAGE_URL: unsupported store {scheme!r}",
            hint="use memory:// (one process) or redis://host:6379/0",
        )
    return f"async+{url}"


class RateLimiter:
    """The gateway's limits; one per app (``app.state.rate_limiter``)."""

    def __init__(self, settings: Settings) -> None:
        self.per_key = parse_limit("API key", settings.rate_limit_per_key, "DESKPILOT_RATE_LIMIT_PER_KEY")
        self.webhook = parse_limit(
            "webhook source", settings.rate_limit_webhook, "DESKPILOT_RATE_LIMIT_WEBHOOK"
        )
        self.auth_failures = parse_limit(
            "failed authentications from this address",
            settings.rate_limit_auth_failures,
            "DESKPILOT_RATE_LIMIT_AUTH_FAILURES",
        )
        self.uri = storage_uri(settings.rate_limit_storage_url)
        self.options = {"implementation": "redispy"} if "redis" in self.uri.split("://", 1)[0] else {}
        self._strategy: SlidingWindowCounterRateLimiter | None = None
        self._storage: Any = None
        self.strategy  # noqa: B018 - a bad URL fails at startup, not at the first request
        self._warned_at = 0.0

    @property
    def strategy(self) -> SlidingWindowCounterRateLimiter:
        """Made on first use after :meth:`aclose`: an asyncio Redis client belongs to one event loop."""
        if self._strategy is None:
            try:
                self._storage = storage_from_string(self.uri, **self.options)
            except Exception as exc:  # a bad URL or a missing client library
                raise ConfigError(f"DESKPILOT_RATE_LIMIT_STORAGE_URL: {exc}") from None
            self._strategy = SlidingWindowCounterRateLimiter(self._storage)
        return self._strategy

    async def aclose(self) -> None:
        """Close the store's connections (at shutdown); counters in memory are dropped."""
        storage, self._storage, self._strategy = self._storage, None, None
        client = getattr(getattr(storage, "bridge", None), "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:
                logger.warning("could not close the rate limit store", exc_info=True)

    @property
    def enabled(self) -> bool:
        return any(limit is not None for limit in (self.per_key, self.webhook, self.auth_failures))

    async def hit_key(self, token: str) -> None:
        """Count a request made with this key (by the key's hash: the key is never stored)."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:32]
        await self._hit(self.per_key, "key", digest)

    async def hit_webhook(self, tenant: str, system: str, route: str = "") -> None:
        await self._hit(self.webhook, "webhook", tenant, system, route)

    async def guard_address(self, address: str) -> None:
        """429 when this address has used up its failed authentications; counts nothing."""
        limit = self.auth_failures
        if limit is None:
            return
        try:
            allowed = await self.strategy.test(limit.item, "authfail", address)
        except Exception:
            self._storage_failed()
            return
        if not allowed:
            raise await self._refusal(limit, "authfail", address)

    async def note_auth_failure(self, address: str) -> None:
        limit = self.auth_failures
        if limit is None:
            return
        try:
            await self.strategy.hit(limit.item, "authfail", address)
        except Exception:
            self._storage_failed()

    async def _hit(self, limit: Limit | None, *identifiers: str) -> None:
        if limit is None:
            return
        try:
            allowed = await self.strategy.hit(limit.item, *identifiers)
        except Exception:
            self._storage_failed()
            return
        if not allowed:
            raise await self._refusal(limit, *identifiers)

    async def _refusal(self, limit: Limit, *identifiers: str) -> RateLimitedError:
        try:
            stats = await self.strategy.get_window_stats(limit.item, *identifiers)
            wait = math.ceil(stats.reset_time - time.time())
        except Exception:
            wait = limit.item.get_expiry()
        wait = min(max(wait, 1), limit.item.get_expiry())
        return RateLimitedError(
            f"too many requests: the limit for this {limit.scope} is {limit.describe()}",
            hint=f"retry after {wait} s; the server operator sets the limit with {limit.setting}",
            retry_after=wait,
        )

    def _storage_failed(self) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning("rate limit store unavailable; requests are not being limited", exc_info=True)


def client_address(request: Request) -> str:
    """The peer's address (behind a proxy, run uvicorn with --proxy-headers so this is the client)."""
    return request.client.host if request.client is not None else "unknown"


def limiter_of(request: Request) -> RateLimiter | None:
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    return limiter


async def guard_client(request: Request) -> None:
    """Dependency for unauthenticated entry points (webhooks): refuse addresses that keep failing."""
    limiter = limiter_of(request)
    if limiter is not None:
        await limiter.guard_address(client_address(request))


async def limit_webhook(request: Request, tenant: str, system: str, route: str = "") -> None:
    """Count an authentic webhook delivery against its source's limit."""
    limiter = limiter_of(request)
    if limiter is not None:
        await limiter.hit_webhook(tenant, system, route)
