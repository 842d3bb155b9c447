"""A CRM API with ETag/If-Match versioning that does NOT honour idempotency keys.

- GET /opportunities, GET /opportunities/{id} (ETag: the record's version).
- PATCH /opportunities/{id} {stage?, next_step?, owner?, amount_cents?} with If-Match: a stale
  version is a 412; without If-Match the patch applies (last writer wins, as many CRMs allow). Each
  applied patch bumps the version and appends an `update` activity (the record's own history).
- POST /opportunities/{id}/activities {kind, subject, body, ref}: a note or task; every request
  creates one, whatever Idempotency-Key it carries. `ref` is a free field the caller may set and
  filter on (GET .../activities?ref=R): a business key, not a deduplication.
- GET /opportunities/{id}/activities.
- Admin: POST /_admin/opportunities (seed), POST /_admin/faults, GET /_admin/effects."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent_pipelines.services.faults import FaultBox, ServiceState, service_app

PATCHABLE = ("stage", "next_step", "owner", "amount_cents")


class PatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str | None = Field(default=None, max_length=64)
    next_step: str | None = Field(default=None, max_length=500)
    owner: str | None = Field(default=None, max_length=64)
    amount_cents: int | None = Field(default=None, ge=0)


class ActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["note", "task"]
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=4000)
    ref: str = Field(default="", max_length=200)


class CrmState(ServiceState):
    """Opportunities and their history (updates, notes, tasks), under the lock."""

    persisted = ("opportunities", "activities")

    def __init__(self) -> None:
        super().__init__()
        self.opportunities: dict[str, dict[str, Any]] = {}
        self.activities: list[dict[str, Any]] = []

    def add_activity(self, **fields: Any) -> dict[str, Any]:
        activity = {"id": f"act_{self.next_seq():06d}", **fields}
        self.activities.append(activity)
        return activity

    def effects(self) -> dict[str, Any]:
        """Counted from the CRM's own history: applied patches and created notes/tasks, and those that
        repeat one already applied (the same change to the same record, the same note by `ref`)."""
        with self.lock:
            seen: dict[str, int] = {}
            for a in self.activities:
                if a["kind"] == "update":
                    k = f"u|{a['opportunity_id']}|{sorted((f, v[1]) for f, v in a['changes'].items())}"
                else:
                    k = f"n|{a['opportunity_id']}|{a['ref'] or (a['subject'], a['body'])}"
                seen[k] = seen.get(k, 0) + 1
            return {"effects": len(self.activities), "duplicates": sum(n - 1 for n in seen.values()),
                    "updates": sum(a["kind"] == "update" for a in self.activities)}


def etag(version: int) -> str:
    return f'"v{version}"'


def crm_app(state: CrmState | None = None, faults: FaultBox | None = None) -> Starlette:
    st, fx = state or CrmState(), faults or FaultBox()

    def found(opp_id: str) -> dict[str, Any] | None:
        with st.lock:
            opp = st.opportunities.get(opp_id)
            return dict(opp) if opp else None

    async def list_opportunities(request: Request) -> Response:
        with st.lock:
            return JSONResponse({"data": [dict(o) for o in st.opportunities.values()]})

    async def get_opportunity(request: Request) -> Response:
        opp = found(request.path_params["opp_id"])
        if opp is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(opp, headers={"ETag": etag(opp["version"])})

    async def patch_opportunity(request: Request) -> Response:
        try:
            patch = PatchIn.model_validate_json(await request.body()).model_dump(exclude_none=True)
        except ValidationError as exc:
            return JSONResponse({"error": "invalid", "detail": exc.errors(include_url=False)}, status_code=422)
        refused = await fx.before_write()
        if refused is not None:
            return refused
        if_match = request.headers.get("if-match")
        with st.lock:
            opp = st.opportunities.get(request.path_params["opp_id"])
            if opp is None:
                return JSONResponse({"error": "not found"}, status_code=404)
            if if_match is not None and if_match != etag(opp["version"]):
                return JSONResponse({"error": "precondition failed", "version": opp["version"]}, status_code=412,
                                    headers={"ETag": etag(opp["version"])})
            changes = {f: [opp.get(f), v] for f, v in patch.items()}
            opp.update(patch)
            opp["version"] += 1
            st.add_activity(opportunity_id=opp["id"], kind="update", changes=changes,
                            from_version=opp["version"] - 1, to_version=opp["version"])
            body = dict(opp)
        return await fx.deliver(request, JSONResponse(body, headers={"ETag": etag(body["version"])}))

    async def create_activity(request: Request) -> Response:
        try:
            body = ActivityIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": "invalid", "detail": exc.errors(include_url=False)}, status_code=422)
        refused = await fx.before_write()
        if refused is not None:
            return refused
        with st.lock:
            opp_id = request.path_params["opp_id"]
            if opp_id not in st.opportunities:
                return JSONResponse({"error": "not found"}, status_code=404)
            activity = st.add_activity(opportunity_id=opp_id, **body.model_dump())
        return await fx.deliver(request, JSONResponse(activity, status_code=201))

    async def list_activities(request: Request) -> Response:
        opp_id, ref = request.path_params["opp_id"], request.query_params.get("ref")
        with st.lock:
            return JSONResponse({"data": [dict(a) for a in st.activities if a["opportunity_id"] == opp_id
                                          and (ref is None or a.get("ref") == ref)]})

    async def seed(request: Request) -> Response:
        with st.lock:
            for o in await request.json():
                st.opportunities[o["id"]] = {"id": o["id"], **{f: o.get(f) for f in PATCHABLE}, "version": 1}
            return JSONResponse({"opportunities": len(st.opportunities)})

    return service_app([
        Route("/opportunities", list_opportunities, methods=["GET"]),
        Route("/opportunities/{opp_id}", get_opportunity, methods=["GET"]),
        Route("/opportunities/{opp_id}", patch_opportunity, methods=["PATCH"]),
        Route("/opportunities/{opp_id}/activities", create_activity, methods=["POST"]),
        Route("/opportunities/{opp_id}/activities", list_activities, methods=["GET"]),
        Route("/_admin/opportunities", seed, methods=["POST"]),
    ], st, fx)
