"""A run's first step starts importing what its later steps need (framework/preload.py), in a fresh
interpreter as a run worker is: the model client for propose, then Great Expectations for validate."""

import subprocess
import sys
import textwrap

from agent_pipelines.framework import preload
from agent_pipelines.framework.llm import LLMConfig, Proposer
from agent_pipelines.project import REPO_ROOT


def fresh_interpreter(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_the_model_clients_parts_are_imported_in_the_background_before_the_first_call():
    # openai imports its API resources (~0.5 s) at a client's first `.chat`, inside the first proposal;
    # a batch's threads all waited on that import before their first request.
    out = fresh_interpreter("""
        import sys
        from agent_pipelines.framework import preload
        from agent_pipelines.framework.llm import LLMConfig, Proposer

        proposer = Proposer(LLMConfig(provider="openai", model="m", base_url="http://127.0.0.1:9/v1"))
        before = "openai.resources" in sys.modules
        thread = preload.in_background(proposer.client_modules)
        thread.join(90)
        import instructor
        print(before, thread.is_alive(), "openai.resources" in sys.modules, "from_openai" in vars(instructor))
    """)
    assert out == "False False True True"


def test_a_module_that_fails_to_import_does_not_stop_the_ones_after_it():
    out = fresh_interpreter("""
        import sys
        from agent_pipelines.framework import preload

        thread = preload.in_background(["agent_pipelines_no_such_module", "colorsys:no_such_name", "wave"])
        thread.join(60)
        print("colorsys" in sys.modules, "wave" in sys.modules)
    """)
    assert out == "True True"


def test_nothing_is_started_offline_or_when_everything_is_imported():
    assert Proposer(LLMConfig()).client_modules == ()
    assert preload.in_background([]) is None
    assert preload.in_background(["json", "pydantic:BaseModel"]) is None
