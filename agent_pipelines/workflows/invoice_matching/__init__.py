"""Invoice-to-PO matching: the first shipped workflow. Steps in workflow.py; policy in policy.yaml."""
