"""Request guards: API keys, a body size limit and rate limits, as one ASGI middleware.

They run before the body is parsed, so an unauthenticated or oversized request costs no JSON
decoding. API keys are compared with `hmac.compare_digest` against every configured key (no
early exit), so the time taken says nothing about how much of a key matched.

Two token buckets (Turner, 1986) bound what a client can do:
- key guessing: with API keys, every wrong or missing key costs its client address a token of
  `auth_failures_burst` (refilled at `auth_failures_per_s`). An address out of tokens is answered
  429 before its key is even compared, so no guess is judged; a right key from another address is
  unaffected. (Only failures count: valid clients behind one proxy address do not share a limit.)
- load: the per-key bucket (per client address without keys), `rate_per_s` sustained and `burst`
  at once, checked after authentication; over it the answer is 429 with Retry-After.
The buckets' table is bounded: a bucket idle long enough to be full again is forgotten (it equals
a new one), and past `rate_limit_clients` buckets the least recently seen is forgotten first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from pathlib import Path

from starlette.exceptions import HTTPException

from trainwise.errors import ConfigError


def load_api_keys(path: str) -> list[bytes]:
    """Keys from a file, one per line ('#' comments and blank lines ignored)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"serve.api_keys_file = {path!r} does not exist; expected a file with one API key per line")
    keys = [line.strip().encode() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise ConfigError(f"serve.api_keys_file = {path!r} holds no keys; expected one API key per line")
    return keys


def match_key(given: bytes, keys: list[bytes]) -> bool:
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key)
    return ok


class TokenBucket:
    """Per-identity token buckets; `take(identity)` -> seconds to wait (0 = allowed, a token spent).

    The table holds at most `max_identities` buckets, in order of last use: a bucket unused for
    `burst / rate_per_s` seconds has refilled, so it is dropped (a new one starts full anyway); when
    the table is full, the least recently used bucket is dropped. `clock` is for tests.
    """

    def __init__(self, rate_per_s: float, burst: int, max_identities: int = 100_000, clock=time.monotonic):
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_identities = max_identities
        self.clock = clock
        self.buckets_: OrderedDict[str, tuple[float, float]] = OrderedDict()  # identity -> (tokens, last update)
        self.lock_ = threading.Lock()

    def take(self, identity: str) -> float:
        with self.lock_:
            tokens, now = self._tokens(identity)
            self.buckets_[identity] = (tokens - 1 if tokens >= 1 else tokens, now)
            self.buckets_.move_to_end(identity)
            while len(self.buckets_) > self.max_identities:
                self.buckets_.popitem(last=False)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate_per_s

    def wait_s(self, identity: str) -> float:
        """Seconds until `identity` has a token, without spending one."""
        with self.lock_:
            tokens, _ = self._tokens(identity)
            return 0.0 if tokens >= 1 else (1 - tokens) / self.rate_per_s

    def _tokens(self, identity: str) -> tuple[float, float]:
        """(tokens now, now) of `identity`, after forgetting the buckets that have refilled."""
        now = self.clock()
        full_after_s = self.burst / self.rate_per_s
        while self.buckets_:
            oldest = next(iter(self.buckets_.values()))
            if now - oldest[1] < full_after_s:
                break
            self.buckets_.popitem(last=False)
        tokens, last = self.buckets_.get(identity, (float(self.burst), now))
        return min(self.burst, tokens + (now - last) * self.rate_per_s), now


class BodyTooLarge(HTTPException):
    """Raised while the body streams in; an HTTPException so that FastAPI's body reader re-raises it."""

    def __init__(self, limit_bytes: int):
        super().__init__(413, f"request body exceeds the limit of {limit_bytes} bytes")


async def send_json(send, status: int, detail: str, headers: dict | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """ASGI middleware guarding paths under `protected_prefix` (the API, not health or metrics)."""

    def __init__(
        self,
        app,
        keys: list[bytes] | None,
        max_body_bytes: int,
        limiter: TokenBucket | None,
        auth_failures: TokenBucket | None = None,
        protected_prefix: str = "/v1/",
        on_status=None,
    ):
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.limiter = limiter
        self.auth_failures = auth_failures if keys is not None else None  # key guessing: per client address
        self.protected_prefix = protected_prefix
        self.on_status = on_status or (lambda status: None)

    async def reject(self, send, status: int, detail: str, headers: dict | None = None) -> None:
        await send_json(send, status, detail, headers)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.protected_prefix):
            return await self.app(scope, receive, send)

        async def counting_send(message):  # requests by status, whoever answers
            if message["type"] == "http.response.start":
                self.on_status(message["status"])
            await send(message)

        return await self._guard(scope, receive, counting_send)

    async def _guard(self, scope, receive, send):
        headers = dict(scope["headers"])
        identity = address = (scope.get("client") or ("unknown",))[0]
        if self.keys is not None:
            if self.auth_failures is not None:
                wait_s = self.auth_failures.wait_s(address)  # before the key is compared: a blocked guess is not judged
                if wait_s > 0:
                    return await self.reject(
                        send,
                        429,
                        "too many requests with a wrong or missing API key from this address",
                        {"retry-after": str(max(1, math.ceil(wait_s)))},
                    )
            given = _bearer(headers)
            if given is None or not match_key(given, self.keys):
                if self.auth_failures is not None:
                    self.auth_failures.take(address)
                return await self.reject(
                    send,
                    401,
                    "missing or invalid API key (send 'Authorization: Bearer KEY')",
                    {"www-authenticate": "Bearer"},
                )
            identity = hashlib.sha256(given).hexdigest()[:16]  # never keep the key itself in memory maps
        if self.limiter is not None:
            wait_s = self.limiter.take(identity)
            if wait_s > 0:
                return await self.reject(
                    send, 429, "rate limit exceeded", {"retry-after": str(max(1, math.ceil(wait_s)))}
                )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await self.reject(
                send, 413, f"request body of {int(length)} bytes exceeds the limit of {self.max_body_bytes} bytes"
            )
        return await self._guard_stream(scope, receive, send)

    async def _guard_stream(self, scope, receive, send):
        """A body sent without Content-Length (chunked) is counted as it arrives."""
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes)
            return message

        await self.app(scope, limited_receive, send)


def _bearer(headers: dict) -> bytes | None:
    auth = headers.get(b"authorization", b"")
    if auth[:7].lower() == b"bearer ":
        return auth[7:].strip()
    return headers.get(b"x-api-key")
