"""Approval notifications: deliver the queued webhook and e-mail notifications of new requests
(framework/notify_delivery.py). This sensor launches no run: delivery is a few bounded calls, and a
failure is retried or escalated in our database, never raised into the tick."""

import dagster as dg

from agent_pipelines.framework.notify_delivery import deliver_due
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.triggers import TRIGGER_INTERVAL_S


def build_notify_sensor() -> dg.SensorDefinition:
    @dg.sensor(name="approvals__notify", minimum_interval_seconds=TRIGGER_INTERVAL_S,
               default_status=dg.DefaultSensorStatus.RUNNING)
    def notify(context: dg.SensorEvaluationContext, runtime: AgentRuntime) -> dg.SkipReason:
        """Send the notifications that are due; the kill switch does not stop them (they write nothing)."""
        report = deliver_due(runtime.db, runtime.approval_key(), runtime.notify)
        if report.failed:
            context.log.warning(f"notifications failed (escalated): {report.failed}")
        return dg.SkipReason(report.line())

    return notify
