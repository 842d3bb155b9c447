"""The Dagster resource every agent job uses: our database and the LLM configuration."""

import functools
import os

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import make_url

from agent_pipelines.framework import preload
from agent_pipelines.framework.claims import DEFAULT_LEASE_S
from agent_pipelines.framework.db import Database
from agent_pipelines.framework.llm import LLMConfig, Proposer
from agent_pipelines.framework.notifications import NotifySettings
from agent_pipelines.framework.retention import DEFAULT_RETENTION_DAYS
from agent_pipelines.framework.signing import ApprovalKey, load_key


@functools.cache
def database(url: str) -> Database:
    """One engine per URL per process (a `tick` executes many runs in one process), migrated to head
    on first use so a fresh database works wherever Dagster first touches it."""
    return Database(url).migrate()


class AgentRuntime(dg.ConfigurableResource):
    db_url: str
    llm_provider: str = "offline"
    llm_model: str = "offline-rules"
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_mode: str = "tools"
    llm_max_reasks: int = 2
    llm_timeout_s: float = 60.0
    llm_concurrency: int = 8  # model calls in flight at once (per process and endpoint)
    llm_requests_per_min: float | None = None  # the provider's limits, per process (ratelimit.py)
    llm_tokens_per_min: float | None = None
    # How long a run's claim on an intent lasts without a heartbeat (each step renews it); past it the
    # recovery sweeper treats the run as dead. Recovery backoff overrides the policy packs' (tests).
    lease_seconds: float = DEFAULT_LEASE_S
    recovery_backoff_s: float | None = None
    # Where the approval signing key file lives unless AGENT_PIPELINES_APPROVAL_KEY is set (signing.py).
    state_dir: str = ".agent_pipelines"
    # Approval notification channels: runs queue a new request's notifications, the sensor delivers them.
    notify: NotifySettings = Field(default_factory=NotifySettings)
    # The reviewer console's base URL: each approval request's link (run tags and asset metadata).
    console_url: str = "http://127.0.0.1:3200"
    # The trigger sensors' largest batch run (adaptive batching: triggers.launch_requests).
    batch_max_size: int = 500
    batch_min_size: int = 8  # fewer new intents than this in a tick: one run each
    trace_retention_days: float = DEFAULT_RETENTION_DAYS  # the trace_retention job purges past it

    @property
    def db(self) -> Database:
        return database(self.db_url)

    def approval_key(self) -> ApprovalKey:
        return load_key(self.state_dir)

    def llm_config(self) -> LLMConfig:
        return LLMConfig(provider=self.llm_provider, model=self.llm_model, base_url=self.llm_base_url,
                         api_key=self.llm_api_key, mode=self.llm_mode, max_reasks=self.llm_max_reasks,  # type: ignore[arg-type]
                         timeout_s=self.llm_timeout_s, concurrency=self.llm_concurrency,
                         requests_per_min=self.llm_requests_per_min, tokens_per_min=self.llm_tokens_per_min)

    def proposer(self) -> Proposer:
        return Proposer(self.llm_config())

    def warm_up(self) -> None:
        """At a run's first step: start importing what its propose and validate steps will need."""
        preload.in_background([*self.proposer().client_modules, preload.GREAT_EXPECTATIONS])

    @classmethod
    def from_config(cls, db_url: str, llm: LLMConfig, *, lease_seconds: float = DEFAULT_LEASE_S,
                    recovery_backoff_s: float | None = None, state_dir: str = ".agent_pipelines",
                    notify: NotifySettings | None = None,
                    console_url: str = "http://127.0.0.1:3200", batch_max_size: int = 500,
                    batch_min_size: int = 8, trace_retention_days: float = DEFAULT_RETENTION_DAYS) -> "AgentRuntime":
        password = make_url(db_url).password if "://" in db_url else None
        notify = notify or NotifySettings()
        notify = NotifySettings(**{  # the webhook URL is itself a credential; so is the SMTP password
            **notify.model_dump(),
            "webhook_url": env_secret(notify.webhook_url, "AGENT_PIPELINES_NOTIFY_WEBHOOK_URL"),
            "smtp_password": env_secret(notify.smtp_password, "AGENT_PIPELINES_SMTP_PASSWORD")})
        return cls(db_url=env_secret(db_url, "AGENT_PIPELINES_DB_URL") if password else db_url,  # type: ignore[arg-type]
                   llm_provider=llm.provider, llm_model=llm.model, llm_base_url=llm.base_url,
                   llm_api_key=env_secret(llm.api_key, "AGENT_PIPELINES_LLM_API_KEY", "OPENAI_API_KEY"),  # type: ignore[arg-type]
                   llm_mode=llm.mode, llm_max_reasks=llm.max_reasks,
                   llm_timeout_s=llm.timeout_s, llm_concurrency=llm.concurrency,
                   llm_requests_per_min=llm.requests_per_min, llm_tokens_per_min=llm.tokens_per_min,
                   lease_seconds=lease_seconds, recovery_backoff_s=recovery_backoff_s,
                   state_dir=state_dir, notify=notify, console_url=console_url, batch_max_size=batch_max_size, batch_min_size=batch_min_size,
                   trace_retention_days=trace_retention_days)


def env_secret(value: str | None, *names: str) -> str | dg.EnvVar | None:
    """A secret as Dagster should hold it: a value given to a resource in code is stored in the job
    snapshot in Dagster's storage (an API key, a database password, in clear), an `EnvVar` only by its
    name and read in the run's process. So a value that came from one of these environment variables is
    passed as that variable; the run worker (tick's process, or the daemon's child) inherits it."""
    for name in names:
        if value is not None and os.environ.get(name) == value:
            return dg.EnvVar(name)
    return value
