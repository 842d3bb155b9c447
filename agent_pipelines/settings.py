"""Configuration from environment variables, read in this one place (the CLI and definitions call it)."""

import os
from pathlib import Path

from pydantic import BaseModel, Field

from agent_pipelines.framework.claims import DEFAULT_LEASE_S
from agent_pipelines.framework.llm import LLMConfig
from agent_pipelines.framework.notifications import NotifySettings
from agent_pipelines.framework.retention import DEFAULT_RETENTION_DAYS

WATCH_ENV = "AGENT_PIPELINES_INBOX_WATCH_SECONDS"
# What `agent-pipelines ui` (and tests/daemon's deployment) give the daemon. Dagster's sensor loop
# comes round every 5 s, and a tick still running when the next round starts misses that round (the
# file then waits ~5 s more). Measured on a loaded 2-core machine, a tick starts up to ~1 s after its
# round and takes ~0.5 s beyond its watch (its record, the gRPC call, the skip): a 3.5 s watch made
# ticks overrun and rounds go missing, 3 s leaves room.
DAEMON_INBOX_WATCH_S = 3.0


class Settings(BaseModel, frozen=True):
    state_dir: Path
    db_url: str
    invoice_inbox: Path
    # A file modified this recently may still be being written: the inbox sensor leaves it for a later tick.
    inbox_settle_seconds: float = 1.0
    # How long an inbox sensor tick watches the folder for new files before it returns (0: it does not).
    # Only for the daemon (README, "Latency"): `tick` evaluates each sensor once and must not wait.
    inbox_watch_seconds: float = Field(0.0, ge=0, le=4.5)
    # The log and metric files incident_triage reads (<dir>/<service>/app.log, metrics.json); None: <state>/diagnostics.
    diagnostics_dir: Path | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)
    lease_seconds: float = Field(DEFAULT_LEASE_S, ge=0)
    # Adaptive batching: a trigger tick with fewer than batch_min_size new intents launches each alone
    # (lowest latency); more are launched as batch runs of up to batch_max_size intents each.
    batch_max_size: int = Field(500, ge=1)
    batch_min_size: int = Field(8, ge=2)
    recovery_backoff_s: float | None = None
    # Approval notification channels (webhook, SMTP) and the console link; none configured by default.
    notify: NotifySettings = Field(default_factory=NotifySettings)
    # Where reviewers open a request (`agent-pipelines console`) and a run (Dagster's UI): links only.
    console_url: str = "http://127.0.0.1:3200"
    dagster_url: str = "http://127.0.0.1:3000"
    # Where failed scorecard checks are posted (Slack-compatible JSON); none by default. The URL is a credential.
    alert_webhook_url: str | None = Field(None, repr=False)
    alert_timeout_s: float = Field(5.0, gt=0)
    # Days the trace's payloads (tool parameters and results, model outputs, policy observations, settled
    # intents' intake) are kept; the daily trace_retention job purges older ones (framework/retention.py).
    trace_retention_days: float = Field(DEFAULT_RETENTION_DAYS, gt=0)

    @classmethod
    def from_env(cls, state_dir: str | Path | None = None, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        state = Path(state_dir or env.get("AGENT_PIPELINES_STATE_DIR") or ".agent_pipelines").resolve()
        db_url = env.get("AGENT_PIPELINES_DB_URL") or f"sqlite:///{state / 'agent_pipelines.sqlite'}"
        inbox = Path(env.get("AGENT_PIPELINES_INVOICE_INBOX") or state / "inbox" / "invoices").resolve()
        llm = LLMConfig(
            provider=env.get("AGENT_PIPELINES_LLM_PROVIDER", "offline"),
            model=env.get("AGENT_PIPELINES_LLM_MODEL", "offline-rules"),
            base_url=env.get("AGENT_PIPELINES_LLM_BASE_URL") or None,
            api_key=env.get("AGENT_PIPELINES_LLM_API_KEY") or env.get("OPENAI_API_KEY") or None,
            mode=env.get("AGENT_PIPELINES_LLM_MODE", "tools"),
            max_reasks=int(env.get("AGENT_PIPELINES_LLM_MAX_REASKS", "2")),
            timeout_s=float(env.get("AGENT_PIPELINES_LLM_TIMEOUT_S", "60")),
            concurrency=int(env.get("AGENT_PIPELINES_LLM_CONCURRENCY", "8")),
            requests_per_min=float(env["AGENT_PIPELINES_LLM_RPM"]) if env.get("AGENT_PIPELINES_LLM_RPM") else None,
            tokens_per_min=float(env["AGENT_PIPELINES_LLM_TPM"]) if env.get("AGENT_PIPELINES_LLM_TPM") else None,
        )
        settle = float(env.get("AGENT_PIPELINES_INBOX_SETTLE_SECONDS", "1.0"))
        diagnostics = env.get("AGENT_PIPELINES_DIAGNOSTICS_DIR")
        backoff = env.get("AGENT_PIPELINES_RECOVERY_BACKOFF_SECONDS")
        return cls(state_dir=state, db_url=db_url, invoice_inbox=inbox, inbox_settle_seconds=settle,
                   inbox_watch_seconds=float(env.get(WATCH_ENV) or 0.0), llm=llm,
                   lease_seconds=float(env.get("AGENT_PIPELINES_LEASE_SECONDS") or DEFAULT_LEASE_S),
                   batch_max_size=int(env.get("AGENT_PIPELINES_BATCH_MAX_SIZE") or 500),
                   batch_min_size=int(env.get("AGENT_PIPELINES_BATCH_MIN_SIZE") or 8),
                   recovery_backoff_s=float(backoff) if backoff else None, notify=NotifySettings.from_env(env),
                   console_url=(env.get("AGENT_PIPELINES_CONSOLE_URL") or "http://127.0.0.1:3200").rstrip("/"),
                   dagster_url=(env.get("AGENT_PIPELINES_DAGSTER_URL") or "http://127.0.0.1:3000").rstrip("/"),
                   alert_webhook_url=env.get("AGENT_PIPELINES_ALERT_WEBHOOK_URL") or None,
                   alert_timeout_s=float(env.get("AGENT_PIPELINES_ALERT_TIMEOUT_SECONDS") or 5.0),
                   trace_retention_days=float(env.get("AGENT_PIPELINES_TRACE_RETENTION_DAYS")
                                              or DEFAULT_RETENTION_DAYS),
                   diagnostics_dir=Path(diagnostics).resolve() if diagnostics else None)

    @property
    def diagnostics_folder(self) -> Path:
        return self.diagnostics_dir or self.state_dir / "diagnostics"

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME") or self.state_dir / "dagster")
