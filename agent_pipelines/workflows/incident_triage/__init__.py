"""Incident triage: an alert becomes, from read-only diagnostics, one incident ticket for humans with a
severity, the owning team and a summary. It never remediates anything. Steps in workflow.py; policy in
policy.yaml."""
