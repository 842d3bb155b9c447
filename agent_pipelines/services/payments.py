"""A payments API that honours idempotency keys (like Stripe's): refunds against captured orders.

- POST /refunds {order_id, amount_cents, reason, reference} with an `Idempotency-Key` header: the
  first request with a key creates the refund; a later one with the same key and body gets the same
  refund back (`Idempotent-Replayed: true`), with another body a 422. Amount above captured − refunded: 422.
- GET /refunds/{id}; GET /refunds?idempotency_key=K (the read-back); GET /orders/{id}/refunds.
- GET /orders/{id}: the order with its captured and refunded amounts.
- Admin (tests and the demo): POST /_admin/orders (seed: id, captured_cents, currency, customer_email, and
  the refunds made before, each once), POST /_admin/faults, GET /_admin/effects."""

from typing import Any

from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agent_pipelines.services.faults import FaultBox, ServiceState, service_app


class RefundIn(BaseModel):
    order_id: str = Field(min_length=1, max_length=64)
    amount_cents: int = Field(gt=0)
    reason: str = Field(min_length=1, max_length=64)
    reference: str = Field(default="", max_length=200)  # the merchant's own reference, stored as is


class PaymentsState(ServiceState):
    """Orders (captured amount) and refunds (each one is an effect), under the lock."""

    persisted = ("orders", "refunds", "by_key")

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.by_key: dict[str, str] = {}

    def refunded(self, order_id: str) -> int:
        return sum(r["amount_cents"] for r in self.refunds.values() if r["order_id"] == order_id)

    def effects(self) -> dict[str, Any]:
        """Counted from the service's own state: refunds, and refunds beyond one per (order, reference)."""
        with self.lock:
            seen: dict[tuple[str, str], int] = {}
            for r in self.refunds.values():
                k = (r["order_id"], r["reference"])
                seen[k] = seen.get(k, 0) + 1
            return {"effects": len(self.refunds), "duplicates": sum(n - 1 for n in seen.values()),
                    "refunded_cents": sum(r["amount_cents"] for r in self.refunds.values())}


def payments_app(state: PaymentsState | None = None, faults: FaultBox | None = None) -> Starlette:
    st, fx = state or PaymentsState(), faults or FaultBox()

    async def create_refund(request: Request) -> Response:
        try:
            body = RefundIn.model_validate_json(await request.body())
        except ValidationError as exc:
            return JSONResponse({"error": "invalid", "detail": exc.errors(include_url=False)}, status_code=422)
        key = request.headers.get("idempotency-key")
        if not key or len(key) > 255:
            return JSONResponse({"error": "an Idempotency-Key header is required"}, status_code=400)
        refused = await fx.before_write()
        if refused is not None:
            return refused
        with st.lock:
            if key in st.by_key:
                prior = st.refunds[st.by_key[key]]
                if prior["request"] != body.model_dump():
                    return JSONResponse({"error": "idempotency key reused with another request"}, status_code=422)
                return JSONResponse(_public(prior), headers={"Idempotent-Replayed": "true"})
            order = st.orders.get(body.order_id)
            if order is None:
                return JSONResponse({"error": f"no order {body.order_id}"}, status_code=404)
            if body.amount_cents > order["captured_cents"] - st.refunded(body.order_id):
                return JSONResponse({"error": "amount exceeds captured minus refunded"}, status_code=422)
            refund = {"id": f"re_{st.next_seq():06d}", "status": "succeeded", "idempotency_key": key,
                      **body.model_dump(), "request": body.model_dump()}
            st.refunds[refund["id"]] = refund
            st.by_key[key] = refund["id"]
        return await fx.deliver(request, JSONResponse(_public(refund), status_code=201))

    async def get_refund(request: Request) -> Response:
        with st.lock:
            refund = st.refunds.get(request.path_params["refund_id"])
        return JSONResponse(_public(refund)) if refund else JSONResponse({"error": "not found"}, status_code=404)

    async def list_refunds(request: Request) -> Response:
        key = request.query_params.get("idempotency_key")
        with st.lock:
            found = [_public(r) for r in st.refunds.values() if key is None or r["idempotency_key"] == key]
        return JSONResponse({"data": found})

    async def get_order(request: Request) -> Response:
        oid = request.path_params["order_id"]
        with st.lock:
            order = st.orders.get(oid)
            refunded = st.refunded(oid)
        if order is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse({**order, "refunded_cents": refunded})

    async def order_refunds(request: Request) -> Response:
        oid = request.path_params["order_id"]
        with st.lock:
            found = [_public(r) for r in st.refunds.values() if r["order_id"] == oid]
        return JSONResponse({"data": found})

    async def seed_orders(request: Request) -> Response:
        orders = await request.json()
        with st.lock:
            for o in orders:
                st.orders[o["id"]] = {"id": o["id"], "captured_cents": int(o["captured_cents"]),
                                      "currency": o.get("currency", "USD"),
                                      **({"customer_email": o["customer_email"]} if o.get("customer_email") else {})}
                # Refunds made before (by hand, in the provider's dashboard): seeded once per key.
                for n, r in enumerate(o.get("refunds") or ()):
                    key = f"seed:{o['id']}:{n}"
                    if key in st.by_key:
                        continue
                    body = RefundIn(order_id=o["id"], amount_cents=r["amount_cents"], reason=r.get("reason", "other"),
                                    reference=r.get("reference", f"manual:{o['id']}:{n}")).model_dump()
                    refund = {"id": f"re_{st.next_seq():06d}", "status": "succeeded", "idempotency_key": key,
                              **body, "request": body}
                    st.refunds[refund["id"]] = refund
                    st.by_key[key] = refund["id"]
        return JSONResponse({"orders": len(st.orders)})

    return service_app([
        Route("/refunds", create_refund, methods=["POST"]),
        Route("/refunds", list_refunds, methods=["GET"]),
        Route("/refunds/{refund_id}", get_refund, methods=["GET"]),
        Route("/orders/{order_id}", get_order, methods=["GET"]),
        Route("/orders/{order_id}/refunds", order_refunds, methods=["GET"]),
        Route("/_admin/orders", seed_orders, methods=["POST"]),
    ], st, fx)


def _public(refund: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (refund or {}).items() if k != "request"}
