"""Commands of real provisioning (clonefleet provision, status, capacity, writes, destroy)."""
