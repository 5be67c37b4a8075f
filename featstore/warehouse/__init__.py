"""The warehouse: the DuckDB catalog, its entity tables and the Parquet partitions of activations.

No torch below this package: a notebook that only queries imports `featstore.warehouse` alone.
"""

from featstore.warehouse.core import (
    Warehouse,
    check_name,
    default_warehouse_dir,
    disk_full_error,
    is_disk_full,
    partition_files,
    sql_files,
)
from featstore.warehouse.queries import sql_dir
from featstore.warehouse.tables import remove_files

__all__ = ["Warehouse", "check_name", "default_warehouse_dir", "disk_full_error", "is_disk_full", "partition_files",
           "remove_files", "sql_dir", "sql_files"]
