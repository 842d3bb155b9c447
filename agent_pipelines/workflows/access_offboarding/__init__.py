"""Access offboarding: a request to remove a leaver's access becomes, after a person approves it, a
disabled account and revoked role grants, once. Steps in workflow.py; policy in policy.yaml."""
