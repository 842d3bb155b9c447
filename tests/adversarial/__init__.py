"""Adversarial suite: hostile tool calls, approvals, documents and proposals through the real gateway,
policy packs and approvals module (see cases.py for the catalogue)."""
