"""What the daemon does, for machines without one: evaluate every sensor once and execute the runs it
requests, in this process, with real Dagster execution against the configured instance.

Public Dagster APIs only: `build_sensor_context` + `SensorDefinition.evaluate_tick` for the sensors and
`JobDefinition.execute_in_process` for the runs. Run-key dedupe follows the daemon's rule: a request
whose run_key already has a run from this sensor (in any status but NOT_STARTED) is skipped. The
Dagster-side cursors this runner keeps (today only the run-failure sensor's) live in our database,
table `sensor_cursors`, under `tick:<sensor name>`, beside the cursors the sensors keep themselves."""

from collections.abc import Callable
from typing import Any

import dagster as dg
from pydantic import BaseModel

from agent_pipelines.framework.db import Database
from agent_pipelines.framework.triggers import load_cursor, save_cursor

RUN_KEY, SENSOR_NAME, SCHEDULE_NAME = "dagster/run_key", "dagster/sensor_name", "dagster/schedule_name"
TICKABLE = "agent_pipelines/tick"  # schedule metadata: `tick` evaluates it too (sensors/crm.py)
CURSOR_PREFIX = "tick:"  # the sensors' own rows are keyed by bare sensor name; ours must not collide
# Quiet console; the run's full event log is stored in the instance as usual.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


class RunOutcome(BaseModel):
    run_id: str
    job: str
    run_key: str
    success: bool


class SensorTick(BaseModel):
    sensor: str
    requested: int = 0
    skipped_existing: int = 0
    skip_reason: str | None = None
    runs: list[RunOutcome] = []


def already_launched(instance: dg.DagsterInstance, sensor: str, run_key: str, by: str = SENSOR_NAME) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY: run_key, by: sensor}))
    return any(r.status != dg.DagsterRunStatus.NOT_STARTED for r in runs)


def evaluate(defs: dg.Definitions, instance: dg.DagsterInstance, sensor: dg.SensorDefinition,
             cursor: str | None) -> Any:
    """One evaluation, as the daemon would do it. No repository_name on purpose: a run status sensor
    matches a run when the sensor's (location, repository) equals the run's origin, and runs executed
    here carry no origin, so (None, None) on both sides is what lets agent_runs__on_failure see them."""
    # `definitions` alone does not hand the sensors their resources (1.13): pass them too.
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources,
                                 sensor_name=sensor.name) as ctx:
        return sensor.evaluate_tick(ctx)


def execute(job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: Any,
            tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """In this process: no worker spawn and no re-import of the code location, which is the point of
    `tick`. Agent jobs use the in-process executor anyway."""
    config = {**(run_config or {}), **QUIET}
    return job.execute_in_process(run_config=config, instance=instance, tags=tags, raise_on_error=False)


def launch(defs: dg.Definitions, instance: dg.DagsterInstance, out: SensorTick, data: Any, by: str,
           default_job: Callable[[], str]) -> SensorTick:
    """Execute a tick's run requests, skipping a run_key this trigger (`by`: the sensor or schedule tag)
    already launched, as the daemon does."""
    repo = defs.get_repository_def()
    out.skip_reason = data.skip_message
    for rr in data.run_requests or []:
        out.requested += 1
        if rr.run_key and already_launched(instance, out.sensor, rr.run_key, by):
            out.skipped_existing += 1
            continue
        job = repo.get_job(rr.job_name or default_job())  # asked only then: a multi-job sensor has none
        tags = {**rr.tags, by: out.sensor, **({RUN_KEY: rr.run_key} if rr.run_key else {})}
        result = execute(job, instance, rr.run_config, tags)
        out.runs.append(RunOutcome(run_id=result.run_id, job=job.name, run_key=rr.run_key or "",
                                   success=result.success))
    return out


def tick_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, db: Database,
                sensor: dg.SensorDefinition) -> SensorTick:
    cursor = load_cursor(db, CURSOR_PREFIX + sensor.name)
    data = evaluate(defs, instance, sensor, cursor)
    out = launch(defs, instance, SensorTick(sensor=sensor.name), data, SENSOR_NAME, lambda: sensor.job_name)
    # Like the daemon: the cursor moves only once the tick's requests were handled.
    if data.cursor is not None and data.cursor != cursor:
        save_cursor(db, CURSOR_PREFIX + sensor.name, data.cursor)
    return out


def tick_schedule(defs: dg.Definitions, instance: dg.DagsterInstance, schedule: dg.ScheduleDefinition) -> SensorTick:
    """A schedule that registers intents (a scan), evaluated now as the daemon would at its time."""
    with dg.build_schedule_context(instance=instance, resources=defs.resources) as ctx:
        data = schedule.evaluate_tick(ctx)
    return launch(defs, instance, SensorTick(sensor=schedule.name), data, SCHEDULE_NAME, lambda: schedule.job_name)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, db: Database) -> list[SensorTick]:
    """Every sensor, then every schedule marked `agent_pipelines/tick` (one that registers intents, such
    as the CRM scan): the other schedules (reports, housekeeping) keep their time."""
    repo = defs.get_repository_def()
    return [tick_sensor(defs, instance, db, sensor) for sensor in repo.sensor_defs] + [
        tick_schedule(defs, instance, s) for s in repo.schedule_defs if s.metadata.get(TICKABLE)]
