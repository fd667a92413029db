"""Moving reserved GPU nodes between consumer accounts: plan, journal, state machine, executor."""
