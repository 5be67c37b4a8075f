"""featstore: a DuckDB feature store for sparse-autoencoder features across model lineages.

Importing the package stays light (no torch): notebooks that only query the warehouse use
`featstore.warehouse.Warehouse`; model, SAE and interpretability stages import torch themselves.
"""

from featstore.errors import FeatstoreError
from featstore.warehouse import Warehouse, default_warehouse_dir

__all__ = ["FeatstoreError", "Warehouse", "default_warehouse_dir"]
__version__ = "0.1.0"
