"""The raylet: local scheduler, worker pool and shared-memory object store of one node."""
