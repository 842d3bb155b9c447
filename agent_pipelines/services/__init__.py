"""Local HTTP services that stand in for external systems of record (a payments provider, a CRM).

They are small and honest: their own state, their own rules, and configurable misbehaviour
(services/faults.py) so the external write path (framework/external.py) can be shown to give one
effect per write whatever they do. `services/harness.py` serves them on 127.0.0.1 free ports."""
