"""Each token's rate limit as one bucket for every replica, in Redis (VOICEFLEET_REDIS_URL), so N
replicas behind a load balancer allow the token's rate once, not N times. Without Redis (one box),
or while Redis does not answer, each process keeps its own buckets (control_plane/tokens.py).

The bucket is refilled and taken from in one Lua script, atomic in Redis, on Redis's clock (the
replicas' clocks never meet): the same token bucket as TokenBucket, in two hash fields."""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# KEYS[1]: the bucket; ARGV: rate per second, burst. Returns the seconds to wait (0: go), as a string.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 60)
return tostring(wait)
"""
RETRY_S = 30.0  # after a Redis failure, buckets stay local this long before Redis is tried again


class SharedBuckets:
    def __init__(self, redis_url: str, *, prefix: str = "voicefleet:rate:"):
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._take = self._redis.register_script(TAKE)
        self.prefix = prefix
        self._down_until = 0.0

    def take(self, token_id: str, rate: float, burst: int) -> float | None:
        """Seconds to wait (0: go), or None when Redis cannot say (the caller uses its own bucket)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            return float(self._take(keys=[self.prefix + token_id], args=[rate, burst]))
        except Exception as exc:  # any Redis failure: limits stay per process for a while, never fail a request
            log.warning("rate limits are per replica for %.0fs: Redis did not answer (%s)", RETRY_S, exc)
            self._down_until = time.monotonic() + RETRY_S
            return None

    def close(self) -> Any:
        return self._redis.close()
