"""Support ticket intake and triage: an inbound message becomes a new ticket or joins the requester's
open one. Steps in workflow.py; policy in policy.yaml."""
