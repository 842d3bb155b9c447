"""What the daemon does, for machines without one: evaluate every sensor once and execute the runs it
requests, in this process, with real Dagster execution against the configured instance.

Run-key dedupe follows the daemon's rule: a request whose run_key already has a run from this sensor
(in any status but NOT_STARTED) is skipped. Cursors are kept in the state folder."""

import json
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import BaseModel

RUN_KEY, SENSOR_NAME = "dagster/run_key", "dagster/sensor_name"
LOCATION = "agent_pipelines"  # the location_name in workspace.yaml


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


class Cursors:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, str | None] = json.loads(path.read_text()) if path.exists() else {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)


def already_launched(instance: dg.DagsterInstance, sensor: str, run_key: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY: run_key, SENSOR_NAME: sensor}))
    return any(r.status != dg.DagsterRunStatus.NOT_STARTED for r in runs)


def workspace_origin(job_name: str, location: str = LOCATION, repository: str = "__repository__") -> Any:
    """The origin the Dagster UI resolves a run's job through when it re-executes it: the code location
    and repository names of workspace.yaml. Runs executed here carry it, so "Re-execute" works on them."""
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    target = LoadableTargetOrigin(executable_path=sys.executable, module_name="agent_pipelines.definitions",
                                  working_directory=str(Path(__file__).resolve().parent.parent))
    code_location = ManagedGrpcPythonEnvCodeLocationOrigin(target, location_name=location)
    return RemoteJobOrigin(RemoteRepositoryOrigin(code_location, repository), job_name)


def execute(job: dg.JobDefinition, instance: dg.DagsterInstance, run_config: Any,
            tags: dict[str, str]) -> dg.ExecuteInProcessResult:
    """Execute in this process (fast: no worker spawn), recording the run under the workspace origin.

    execute_in_process has no origin parameter, so the run it creates is given one on the way in."""
    create = instance.create_run_for_job

    def create_with_origin(*args: Any, **kwargs: Any) -> Any:
        return create(*args, **{**kwargs, "remote_job_origin": workspace_origin(job.name)})

    # Quiet console; the run's full event log is stored in the instance as usual.
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    instance.create_run_for_job = create_with_origin  # type: ignore[method-assign]
    try:
        return job.execute_in_process(run_config=run_config, instance=instance, tags=tags, raise_on_error=False)
    finally:
        del instance.create_run_for_job


def sensor_context(defs: dg.Definitions, instance: dg.DagsterInstance, name: str,
                   cursor: str | None) -> dg.SensorEvaluationContext:
    """Like the daemon's context: it names the workspace's code location and repository, which run
    status sensors match runs against (build_sensor_context cannot set the location)."""
    from dagster._core.execution.build_resources import wrap_resources_for_execution

    origin = workspace_origin("").repository_origin
    return dg.SensorEvaluationContext(
        instance_ref=None, cursor=cursor, repository_name=origin.repository_name, instance=instance,
        sensor_name=name, resources=wrap_resources_for_execution(defs.resources),
        code_location_origin=origin.code_location_origin)


def tick(defs: dg.Definitions, instance: dg.DagsterInstance, cursor_file: Path) -> list[SensorTick]:
    repo = defs.get_repository_def()
    cursors = Cursors(cursor_file)
    report = []
    for sensor in repo.sensor_defs:
        out = SensorTick(sensor=sensor.name)
        with sensor_context(defs, instance, sensor.name, cursors.data.get(sensor.name)) as ctx:
            data = sensor.evaluate_tick(ctx)
        out.skip_reason = data.skip_message
        for rr in data.run_requests or []:
            out.requested += 1
            if rr.run_key and already_launched(instance, sensor.name, rr.run_key):
                out.skipped_existing += 1
                continue
            job = repo.get_job(rr.job_name or sensor.job_name)
            tags = {**rr.tags, SENSOR_NAME: sensor.name, **({RUN_KEY: rr.run_key} if rr.run_key else {})}
            result = execute(job, instance, rr.run_config, tags)
            out.runs.append(RunOutcome(run_id=result.run_id, job=job.name, run_key=rr.run_key or "",
                                       success=result.success))
        # Like the daemon: the cursor moves only once the tick's requests were handled.
        if data.cursor is not None:
            cursors.data[sensor.name] = data.cursor
            cursors.save()
        report.append(out)
    return report
