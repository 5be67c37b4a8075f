"""The one error type users see: a one-line message saying what is wrong and what to do."""


class FeatstoreError(Exception):
    """Bad input or state. The CLI prints `error: <message>` and exits 1; the warehouse is unchanged."""
