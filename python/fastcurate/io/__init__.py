"""Generic I/O shared by every stage: shard discovery, column roles and row ids, shard readers,
atomic writers (docs/runner.md)."""

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_table
from .columns import ROLE_CANDIDATES, ROLE_FLAGS, ROLES, Roles, resolve_roles
from .discover import ShardRef, discover_shards
from .readers import ShardReader, open_shard
from .writer import AtomicParquetWriter

__all__ = ["discover_shards", "ShardRef", "open_shard", "ShardReader", "resolve_roles", "Roles", "ROLES",
           "ROLE_FLAGS", "ROLE_CANDIDATES", "AtomicParquetWriter", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_table"]
