"""A reconstructable invoice job with injectable crashes, for re-execution tests. A fault is armed by
naming it in the file at $AGENT_PIPELINES_TEST_FAULTS: `schedule_payment` crashes that write tool
(after the earlier writes of the same commit landed), `verify` crashes the VERIFY step."""

import os
from dataclasses import replace
from pathlib import Path

import dagster as dg

from agent_pipelines.framework.tools import ToolRegistry
from agent_pipelines.framework.jobs import build_job, build_jobs
from agent_pipelines.framework.runtime import AgentRuntime
from agent_pipelines.framework.step_store import StepStore
from agent_pipelines.workflows.invoice_matching.workflow import InvoiceMatching


def armed(fault: str) -> bool:
    path = os.environ.get("AGENT_PIPELINES_TEST_FAULTS")
    return bool(path) and Path(path).exists() and fault in Path(path).read_text().split()


class Crash(RuntimeError):
    pass


class FaultyInvoiceMatching(InvoiceMatching):
    # The crashing payment tool runs apart from the other writes (not local, as a tool calling another
    # system would), so the commit writes one by one and a crash in it leaves the two writes before it
    # landed: a partial commit. GroupedFaultyInvoiceMatching keeps it local: the three go together.
    payment_local = False

    def tools(self) -> ToolRegistry:
        registry = ToolRegistry()
        for name in super().tools().names():
            tool = super().tools().get(name)
            if name == "schedule_payment":
                real = tool.fn

                def crashing(conn, p, real=real):  # type: ignore[no-untyped-def]
                    if armed("schedule_payment"):
                        raise Crash("injected crash in schedule_payment")
                    return real(conn, p)

                tool = replace(tool, fn=crashing, local=self.payment_local)
            registry.register(tool)
        return registry

    def verify(self, step, intake, context, proposal, receipts):  # type: ignore[no-untyped-def]
        if armed("verify"):
            raise Crash("injected crash in verify")
        return super().verify(step, intake, context, proposal, receipts)


class GroupedFaultyInvoiceMatching(FaultyInvoiceMatching):
    payment_local = True  # every write local: a crash in the payment rolls back the two before it


def faulty_job(wf: FaultyInvoiceMatching | None = None) -> dg.JobDefinition:
    # Dagster caches reconstructable definitions per process, so the database comes from run config
    # (resources.runtime.config.db_url), not from whatever the environment held at first load.
    wf = wf or FaultyInvoiceMatching()
    runtime = AgentRuntime.configure_at_launch()
    defs = dg.Definitions(jobs=[build_job(wf)], resources={"runtime": runtime, "io_manager": StepStore(runtime=runtime)})
    return defs.get_job_def(wf.name)


class FaultyStepStore(StepStore):
    """StepStore that fails to store a batch step's output when `store:<step>` is armed: the op fails
    after its intents were processed, as when the database or the worker goes away at that moment."""

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        step = context.step_key.split("__batch_")[-1].split("[")[0]
        if armed(f"store:{step}"):
            raise Crash(f"injected failure storing the {step} output")
        super().handle_output(context, obj)


def grouped_faulty_job() -> dg.JobDefinition:
    return faulty_job(GroupedFaultyInvoiceMatching())


def faulty_batch_job() -> dg.JobDefinition:
    """The invoice batch job with injectable crashes (the workflow's and FaultyStepStore's)."""
    wf = FaultyInvoiceMatching()
    runtime = AgentRuntime.configure_at_launch()
    defs = dg.Definitions(jobs=[build_jobs(wf).batch],
                          resources={"runtime": runtime, "io_manager": FaultyStepStore(runtime=runtime)})
    return defs.get_job_def(f"{wf.name}__batch")
