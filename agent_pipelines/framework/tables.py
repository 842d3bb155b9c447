"""The framework's own tables (SQLAlchemy Core). Workflows add their system-of-record tables to the
same `metadata`; Alembic migrations (agent_pipelines/migrations) own the schema in every database."""

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger autoincrement ids: SQLite needs INTEGER PRIMARY KEY for rowid aliasing, so use a variant.
Id = BigInteger().with_variant(Integer(), "sqlite")
Ts = DateTime(timezone=True)

intents = Table(
    "intents",
    metadata,
    Column("intent_id", String(80), primary_key=True),
    Column("workflow", String(64), nullable=False, index=True),
    Column("correlation_id", String(200), nullable=False, index=True),
    Column("state", String(32), nullable=False, index=True),
    Column("reason", Text),
    Column("source_ref", Text, nullable=False),  # file path, table:id@version, ...
    Column("source_digest", String(64), nullable=False),
    Column("intake", JSON),  # the source document as received (redacted, size-capped)
    Column("last_run_id", String(64)),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    # The claim: the one run that may act on the intent, until its lease expires (renewed at each step).
    Column("owner_run_id", String(64)),
    Column("lease_expires_at", Ts),
    Column("heartbeat_at", Ts),
    # Recovery bookkeeping of the sweeper: attempts made and when the next one is due (backoff).
    Column("recovery_attempts", Integer, nullable=False, server_default="0"),
    Column("next_recovery_at", Ts),
)

intent_transitions = Table(
    "intent_transitions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("from_state", String(32)),
    Column("to_state", String(32), nullable=False),
    Column("reason", Text),
    Column("run_id", String(64)),
    Column("at", Ts, nullable=False),
)

# The write ledger. UNIQUE(idempotency_key) is what makes a write happen once: the write and its row
# commit in one transaction, so a second attempt conflicts instead of writing again.
writes = Table(
    "writes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(64), nullable=False, unique=True),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("workflow", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("target", Text, nullable=False),  # table:primary key of the record written
    # committed | pending (an external call whose outcome is not recorded yet) | reconciled (decided by
    # reading the external system back); framework/ledger.py WriteStatus.
    Column("status", String(16), nullable=False, index=True),
    Column("before", JSON),
    Column("after", JSON),
    Column("run_id", String(64)),
    Column("approval_id", String(80)),  # the approval this write carried out (decisions hold who and when)
    Column("at", Ts, nullable=False),
    Column("evidence", JSON),  # external writes: the HTTP answer or the read-back that decided the row (redacted)
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), index=True),
    Column("intent_id", String(80), index=True),
    Column("workflow", String(64), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("impact", String(8), nullable=False),
    Column("params", JSON),
    Column("result", JSON),
    Column("status", String(16), nullable=False),  # ok | error | blocked | would_write | shadow | held
    Column("error", Text),
    # sha256 of tool + canonical params (before redaction): loop detection counts equal calls per run.
    Column("call_digest", String(64), index=True),
    Column("attempts", Integer, nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("at", Ts, nullable=False),
    # The step that made the call (read, validate, commit, ...; migration 0011): a replay answers the
    # read step's calls from the recording, never a commit's re-read or a verify's read-back.
    Column("step", String(32)),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), index=True),
    Column("intent_id", String(80), index=True),
    Column("workflow", String(64), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("output", JSON),
    Column("error", Text),
    Column("at", Ts, nullable=False),
    # What replay needs (framework/recording.py): the sha256 of the request (model, messages, response
    # schema) and the raw response to it (the assistant message and its usage), redacted like the trace.
    Column("request_digest", String(64), index=True),
    Column("response", JSON),
)

policy_decisions = Table(
    "policy_decisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), index=True),
    Column("intent_id", String(80), index=True),
    Column("workflow", String(64), nullable=False),
    Column("policy_digest", String(64), nullable=False),
    Column("subject", String(64), nullable=False),  # "proposal" or a tool name
    Column("decision", String(16), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("observed", JSON),
    Column("at", Ts, nullable=False),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("approval_id", String(80), primary_key=True),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("workflow", String(64), nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("payload", JSON, nullable=False),  # the exact change commit would write
    Column("digest", String(64), nullable=False),
    Column("evidence", JSON, nullable=False),
    Column("rationale", Text),
    Column("requested_by", String(128), nullable=False),
    Column("run_id", String(64)),
    Column("created_at", Ts, nullable=False),
    Column("expires_at", Ts, nullable=False),
    Column("required_approvals", Integer, nullable=False, server_default="1"),
    # set once when the request is decided: the change the continuation run commits, and the
    # decision that completed it (its id is the continuation's run_key)
    Column("approved_payload", JSON),
    Column("approved_digest", String(64)),
    Column("final_decision_id", String(80)),
    Column("decided_at", Ts),
    Column("policy_digest", String(64)),  # the policy pack pinned for the request (migration 0009)
    UniqueConstraint("intent_id", "digest"),
)

# One row per approver decision. UNIQUE(approval_id, decided_by): an approver decides once.
approval_decisions = Table(
    "approval_decisions",
    metadata,
    Column("decision_id", String(80), primary_key=True),
    Column("approval_id", String(80), nullable=False, index=True),
    Column("decided_by", String(128), nullable=False),
    Column("decision", String(16), nullable=False),  # approve | deny | edit
    Column("note", Text),
    Column("digest_seen", String(64), nullable=False),  # the change the approver decided on
    Column("edited_payload", JSON),
    Column("edited_digest", String(64)),
    Column("at", Ts, nullable=False),
    Column("reviewer_token_id", String(32)),  # the token that authenticated the reviewer (migration 0009)
    Column("signature", String(64)),  # HMAC by the server key over the decision (framework/signing.py)
    UniqueConstraint("approval_id", "decided_by"),
)

escalations = Table(
    "escalations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(48), nullable=False),  # approval_expired | input_expired | run_failed | ...
    Column("subject", String(200), nullable=False),
    Column("intent_id", String(80), index=True),
    Column("message", Text, nullable=False),
    Column("at", Ts, nullable=False),
    UniqueConstraint("kind", "subject"),
)

# A follow-up question an intent waits on (waiting_for_input), with its TTL and the answer.
input_requests = Table(
    "input_requests",
    metadata,
    Column("request_id", String(80), primary_key=True),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("field", String(64), nullable=False),
    Column("question", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),  # pending | answered | expired
    Column("answer", JSON),
    Column("answered_by", String(128)),
    Column("run_id", String(64)),
    Column("created_at", Ts, nullable=False),
    Column("expires_at", Ts, nullable=False),
    Column("answered_at", Ts),
)

# The output of each step an intent completed, so a resumed intent does not redo finished work.
intent_steps = Table(
    "intent_steps",
    metadata,
    Column("intent_id", String(80), primary_key=True),
    Column("step", String(32), primary_key=True),
    Column("output", JSON, nullable=False),
    Column("run_id", String(64)),
    Column("at", Ts, nullable=False),
)


# Operator controls: kill switches (scope `global`, `workflow:<name>`, `tool:<name>`) and rollout modes
# (`mode:<workflow>`). One row per key holds the current value; control_events keeps the history.
controls = Table(
    "controls",
    metadata,
    Column("key", String(140), primary_key=True),
    Column("kind", String(16), nullable=False),  # kill_switch | mode
    Column("value", String(32), nullable=False),  # on | off | <mode>
    Column("reason", Text),
    Column("changed_by", String(120), nullable=False),
    Column("changed_at", Ts, nullable=False),
)

control_events = Table(
    "control_events",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(140), nullable=False, index=True),
    Column("value", String(32), nullable=False),
    Column("reason", Text),
    Column("changed_by", String(120), nullable=False),
    Column("at", Ts, nullable=False),
)

# An intent a kill switch parked mid-flight, and how to resume it once the switch is off.
parked_intents = Table(
    "parked_intents",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("workflow", String(64), nullable=False),
    Column("scope", String(140), nullable=False),  # the control key that parked it
    Column("step", String(32), nullable=False),
    Column("approval_id", String(40)),  # set when parked after an approval: resume that continuation
    # The commit step's input when it parked at commit or later: the resume run continues from exactly
    # this decided change (re-deciding would see the intent's own partial writes as a changed world).
    Column("carry", JSON),
    Column("run_id", String(64)),
    Column("parked_at", Ts, nullable=False),
    Column("released_at", Ts),
)

# Writes that read_only and shadow runs would have made: the tool ran in a transaction that was rolled
# back, so `before`/`after` are exactly what the write would have done. Shadow rows are compared with
# what humans did in the real tables (`agent-pipelines shadow report`).
shadow_writes = Table(
    "shadow_writes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("workflow", String(64), nullable=False),
    Column("intent_id", String(80), nullable=False),
    Column("action", String(120), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("tool", String(64), nullable=False),
    Column("target_table", String(64), nullable=False),
    Column("record_key", Text, nullable=False),
    Column("params", JSON),
    Column("before", JSON),
    Column("after", JSON),
    Column("run_id", String(64)),
    Column("at", Ts, nullable=False),
    UniqueConstraint("workflow", "intent_id", "action", "mode"),
)


# Files an inbox sensor has registered, known by identity (name and content), not by mtime: a file
# moved in with an old mtime is new, the same bytes under the same name are not. A row is written only
# once the file's intent exists, so a file that failed on an infrastructure error is retried next tick.
inbox_files = Table(
    "inbox_files",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sensor", String(120), nullable=False),
    Column("name", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("content_digest", String(64), nullable=False),
    Column("intent_id", String(80)),
    Column("outcome", String(32), nullable=False),  # registered | rejected | skipped
    Column("reason", Text),
    Column("first_seen_at", Ts, nullable=False),
    UniqueConstraint("sensor", "name", "content_digest"),
)

# Sensor cursors kept in our database, next to the intents they produce: `tick` and the daemon read
# and write the same row, so neither re-scans what the other has registered.
sensor_cursors = Table(
    "sensor_cursors",
    metadata,
    Column("sensor", String(120), primary_key=True),
    Column("cursor", Text, nullable=False),
    Column("updated_at", Ts, nullable=False),
)


# Dagster step outputs (what one op hands the next, e.g. a Carry with the raw intake), written and read
# by our IO manager (framework/step_store.py) instead of pickles under $DAGSTER_HOME: Dagster's storage
# holds no intake. Keyed like Dagster's own output identifier (run, step, output), so re-execution from
# failure loads a skipped step's output from the parent run. Pruned once the intent is terminal and
# the row is older than the store's retention; rows of a non-terminal intent stay for re-execution.
step_outputs = Table(
    "step_outputs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("step_key", String(255), nullable=False),
    Column("output_name", String(255), nullable=False),  # "<output>[:<mapping key>]", or an asset partition
    Column("intent_id", String(80), index=True),  # when the output carries one (a Carry): retention
    Column("payload", LargeBinary, nullable=False),  # pickled value
    Column("created_at", Ts, nullable=False, index=True),
    UniqueConstraint("run_id", "step_key", "output_name"),
)


# -- trusted approvals (migration 0009) ------------------------------------------------------------------
# A person who may decide approvals: a personal token whose scrypt hash only is stored. Whether they may
# decide a workflow's requests is the workflow's policy pack's word (approvers by name), never this row's.
reviewers = Table(
    "reviewers",
    metadata,
    Column("token_id", String(32), primary_key=True),  # the public part of the token: lookup by id
    Column("name", String(128), nullable=False, index=True),
    Column("roles", JSON, nullable=False),
    Column("token_hash", Text, nullable=False),  # scrypt$n$r$p$salt$hash
    Column("seal", String(64), nullable=False),  # HMAC over the row: a row inserted in SQL is refused
    Column("created_at", Ts, nullable=False),
    Column("revoked_at", Ts),
)

# Append-only, hash-chained record of every approval event: hash = sha256(prev_hash + the row's canonical
# JSON). `audit verify` walks it and cross-checks the approval tables against it.
approval_events = Table(
    "approval_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("approval_id", String(80), index=True),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("at", String(40), nullable=False),  # ISO-8601 UTC text: hashed exactly as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# The chain's head, one row locked by every append (so appends serialize) and HMAC-sealed, so that
# dropping the newest events is detected too.
audit_head = Table(
    "audit_head",
    metadata,
    Column("chain", String(32), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("seal", String(64), nullable=False),
)

# -- notifications (migration 0010) ------------------------------------------------------------------------
# The outbox of approval notifications: rows are inserted in the transaction that stores the request, one
# per configured channel and recipient (the id is derived from the three, so a row is never doubled), and
# the approvals__notify sensor delivers them. `message` is the content as the pack allowed it (already
# filtered and redacted), so delivery needs neither the pack nor the evidence. A row is claimed by moving next_attempt_at forward (a lease) with a compare-and-set on
# (status, attempts): two deliverers never send the same attempt; a process that dies mid-send leaves the
# row due again after the lease (at-least-once).
notifications = Table(
    "notifications",
    metadata,
    Column("notification_id", String(40), primary_key=True),
    Column("approval_id", String(80), nullable=False, index=True),
    Column("workflow", String(64), nullable=False),
    Column("channel", String(16), nullable=False),  # webhook | email
    Column("recipient", String(320), nullable=False),  # the e-mail address; "" for the webhook
    Column("message", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Ts, nullable=False, index=True),
    Column("last_error", Text),
    Column("sent_at", Ts),
    Column("created_at", Ts, nullable=False),
)

# -- forensics (migration 0013) ----------------------------------------------------------------------------
# One row per read of an intent's or a run's trace by a person (framework/access.py): the CLI's `trace show`
# and `approvals show`, the console's request page. Kept out of the audit chain on purpose: reads are
# frequent and must not take the chain's head lock or need the signing key; retention never purges them.
trace_access = Table(
    "trace_access",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("actor", String(160), nullable=False),  # a reviewer's name, or cli:<os user>
    Column("via", String(16), nullable=False),  # cli | console
    Column("what", String(64), nullable=False),  # the command or page
    Column("intent_id", String(80), index=True),
    Column("run_id", String(64)),
    Column("approval_id", String(80)),
    Column("at", Ts, nullable=False, index=True),
)

# -- replay recording (migration 0011) -------------------------------------------------------------------
# One row per intent and run that took it through READ: the versions the run was pinned to and its intake's
# digest (written at read), then what VALIDATE decided and the writes it planned (redacted like the trace).
# With tool_calls (the read step's results) and llm_calls (the proposal) it is what `replay` re-runs.
intent_runs = Table(
    "intent_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("intent_id", String(80), nullable=False, index=True),
    Column("workflow", String(64), nullable=False),
    Column("workflow_version", String(32), nullable=False),
    Column("prompt_version", String(32), nullable=False),
    Column("policy_version", String(32), nullable=False),
    Column("policy_digest", String(64), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("intake_digest", String(64), nullable=False),  # sha256 of the intake's canonical JSON
    Column("decision", String(16)),  # allow | needs_approval | deny, once VALIDATE decided
    Column("rule", String(64)),
    Column("planned_writes", JSON),  # [{action, tool, target, params}], redacted
    Column("started_at", Ts, nullable=False),
    Column("decided_at", Ts),
    UniqueConstraint("run_id", "intent_id"),
)
