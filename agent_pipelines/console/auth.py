"""Who is using the reviewer console: signed session cookies, CSRF tokens, login rate limiting and the
optional reverse-proxy identity header.

The session cookie holds the reviewer's token id and name (never the token), signed with a secret
derived from the server approval key (signing.py): a restart keeps sessions valid, rotating the key
ends them all, and nobody without the key can mint one. It is HttpOnly and SameSite=Strict, Secure
when the console is served over https, and expires after SESSION_MAX_AGE_S. Every request looks the
token id up again (`reviewers.active`), so revoking a reviewer ends their session at once. Every
session, anonymous ones too, carries a random CSRF token that every POST must send back."""

import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from agent_pipelines.framework.signing import ApprovalKey

COOKIE = "ap_console"
SESSION_MAX_AGE_S = 8 * 3600
CSRF_FIELD = "csrf"
TRUSTED_HEADER_ENV = "AGENT_PIPELINES_CONSOLE_TRUSTED_HEADER"
TRUSTED_PROXIES_ENV = "AGENT_PIPELINES_CONSOLE_TRUSTED_PROXIES"


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    token_id: str | None = None
    name: str | None = None
    fresh: bool = False  # not yet sent to the browser: the response must set the cookie


class Sessions:
    def __init__(self, key: ApprovalKey, *, always_secure: bool = False) -> None:
        # A purpose-bound derivation: the approval key itself never leaves signing.py's HMACs.
        self._serializer = URLSafeTimedSerializer(key.sign("reviewer-console-session-v1"), salt="ap-console")
        self._always_secure = always_secure

    def load(self, request: Request) -> Session:
        """The request's session, or a new anonymous one (a bad, expired or forged cookie counts as none)."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self._serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
                if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                    return Session(csrf=data["csrf"], token_id=data.get("tid"), name=data.get("name"))
            except BadSignature:
                pass
        return Session(fresh=True)

    def save(self, request: Request, response: Response, session: Session) -> None:
        value = self._serializer.dumps({"csrf": session.csrf, "tid": session.token_id, "name": session.name})
        response.set_cookie(COOKIE, value, max_age=SESSION_MAX_AGE_S, path="/", httponly=True, samesite="strict",
                            secure=self._always_secure or request.url.scheme == "https")


def csrf_ok(session: Session, sent: object) -> bool:
    """The POST carries this session's CSRF token (constant-time compare). A fresh session has none to match."""
    return not session.fresh and isinstance(sent, str) and hmac.compare_digest(sent.encode(), session.csrf.encode())


class LoginLimiter:
    """Failed logins in a sliding window, per client address and per token id: past `max_failures`
    within `window_s` a key is refused (429) until its oldest failure ages out. In this process's
    memory: a restart forgets the counts, and each console process counts its own."""

    def __init__(self, max_failures: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self._clock = max_failures, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        cutoff = self._clock() - self.window_s
        while q and q[0] <= cutoff:
            q.popleft()
        return q

    def blocked(self, keys: Iterable[str]) -> bool:
        return any(len(self._recent(k)) >= self.max_failures for k in keys)

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        for k in keys:
            self._recent(k).append(now)
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses or ids
            for k in [k for k, q in self._failures.items() if not q]:
                del self._failures[k]


@dataclass(frozen=True)
class TrustedProxy:
    """Identity from a reverse proxy's header (the usual SSO deployment), believed only when the
    request comes straight from one of the configured proxy addresses."""

    header: str
    proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "TrustedProxy | None":
        header = (env.get(TRUSTED_HEADER_ENV) or "").strip()
        proxies = [p.strip() for p in (env.get(TRUSTED_PROXIES_ENV) or "").split(",") if p.strip()]
        if not header:
            return None
        if not proxies:  # a header anyone can send is not an identity
            raise ValueError(f"{TRUSTED_HEADER_ENV} needs {TRUSTED_PROXIES_ENV} (the proxy's addresses)")
        return cls(header=header, proxies=tuple(ipaddress.ip_network(p, strict=False) for p in proxies))

    def user(self, request: Request) -> str | None:
        host = request.client.host if request.client else None
        if host is None:
            return None
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        if not any(addr in net for net in self.proxies):
            return None
        return (request.headers.get(self.header) or "").strip() or None
