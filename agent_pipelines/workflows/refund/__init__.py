"""Refund through the payments API: a customer asks for a refund of one order; the workflow reads the order
and its refunds from the payments service, proposes the amount and reason, refunds once (idempotency key,
read-back recovery) and stores a customer-notification draft. Steps in workflow.py; policy in policy.yaml."""
