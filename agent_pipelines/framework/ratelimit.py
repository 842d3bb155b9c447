"""Per-provider limits on calls in flight and on requests and tokens per minute, shared by every thread
of a process (a batch step proposes for many intents at once). Token buckets: a call takes one request and its estimated
tokens before it is sent, and settles the difference with the usage the provider reported afterwards,
so a minute's spend follows the real counts, not the estimates."""

import threading
import time
from dataclasses import dataclass, field


@dataclass
class _Bucket:
    per_min: float
    level: float = 0.0
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.level = self.per_min  # a full minute's allowance to start with

    def refill(self, now: float) -> None:
        self.level = min(self.per_min, self.level + (now - self.stamp) * self.per_min / 60.0)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until `amount` is available (0: now). An amount above a minute's allowance waits for
        a full bucket rather than forever."""
        need = min(amount, self.per_min) - self.level
        return 0.0 if need <= 0 else need * 60.0 / self.per_min


class RateLimiter:
    """requests_per_min and tokens_per_min for one provider endpoint; None means unlimited."""

    def __init__(self, requests_per_min: float | None, tokens_per_min: float | None) -> None:
        self._cond = threading.Condition()
        self._requests = _Bucket(requests_per_min) if requests_per_min else None
        self._tokens = _Bucket(tokens_per_min) if tokens_per_min else None

    def _delay(self, est_tokens: int) -> float:
        now = time.monotonic()
        waits = []
        for bucket, amount in ((self._requests, 1.0), (self._tokens, float(est_tokens))):
            if bucket is not None:
                bucket.refill(now)
                waits.append(bucket.wait_for(amount))
        return max(waits, default=0.0)

    def delay(self, est_tokens: int) -> float:
        """Seconds a call of `est_tokens` would wait now (0: it would go at once)."""
        with self._cond:
            return self._delay(est_tokens)

    def acquire(self, est_tokens: int) -> None:
        """Block until one request and `est_tokens` tokens fit in the last minute's allowance."""
        with self._cond:
            while True:
                delay = self._delay(est_tokens)
                if delay <= 0:
                    if self._requests is not None:
                        self._requests.level -= 1
                    if self._tokens is not None:
                        self._tokens.level -= est_tokens
                    return
                self._cond.wait(timeout=delay)

    def settle(self, est_tokens: int, used_tokens: int) -> None:
        """Charge what the call really used instead of the estimate."""
        if self._tokens is None:
            return
        with self._cond:
            self._tokens.level -= used_tokens - est_tokens
            self._cond.notify_all()


_limiters: dict[tuple[str, str, float | None, float | None], RateLimiter] = {}
_lock = threading.Lock()


def limiter_for(provider: str, endpoint: str, requests_per_min: float | None,
                tokens_per_min: float | None) -> RateLimiter | None:
    """The process's limiter for one provider endpoint (None when neither limit is set)."""
    if not requests_per_min and not tokens_per_min:
        return None
    key = (provider, endpoint, requests_per_min, tokens_per_min)
    with _lock:
        if key not in _limiters:
            _limiters[key] = RateLimiter(requests_per_min, tokens_per_min)
        return _limiters[key]


_slots: dict[tuple[str, str], tuple[int, threading.BoundedSemaphore]] = {}


def in_flight_for(provider: str, endpoint: str, limit: int) -> threading.BoundedSemaphore:
    """The process's bound on calls in flight to one provider endpoint. It is held for the call only, so
    threads that are recording one intent's proposal do not keep another intent's call waiting."""
    key = (provider, endpoint)
    with _lock:
        if key not in _slots or _slots[key][0] != limit:
            _slots[key] = (limit, threading.BoundedSemaphore(max(1, limit)))
        return _slots[key][1]
