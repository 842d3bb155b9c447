"""The chaos suite (issue 8, durable completion): real SIGKILLs, PostgreSQL restarts, tool faults, lost
acknowledgements, a full disk and concurrent ticks, with the end state asserted from the tables."""
