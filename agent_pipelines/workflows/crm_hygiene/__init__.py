"""CRM hygiene: a daily scan finds opportunities whose stage or next step has fallen behind their
activity notes; the agent brings them up to date in the CRM (an external API), one If-Match write each.
Steps in workflow.py; policy in policy.yaml."""
