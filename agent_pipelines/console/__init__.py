"""The reviewer console (`agent-pipelines console`): a web page per approval request, over the same
approval functions as the CLI. See app.py (routes) and auth.py (sessions, CSRF, rate limiting)."""
