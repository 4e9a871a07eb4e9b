"""Commands of the simulator (clonefleet simulate, validate)."""
