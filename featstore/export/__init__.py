"""Exports: warehouse tables as Parquet/CSV for other engines (`tables.py`) and feature data in the
formats of other tools' viewers (`viewers/`)."""
