"""The feature browser: `featstore serve` (a read-only Flask app over a warehouse) and the static
feature pages `featstore report --features N` writes beside the report."""
