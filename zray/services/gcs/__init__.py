"""Global Control Store: LMDB-backed shards and the client every other part uses."""
