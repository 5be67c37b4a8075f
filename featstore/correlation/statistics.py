"""The correlation statistics and match methods, registered by name with the SQL that computes them.

Adding a statistic is one `register(Statistic(...))` plus its SQL: the table macro that gives each
side's rows `(key, feature, x)` (sql/, e.g. `corr_occurrences`) and the named query that aggregates
one block of feature pairs (sql/queries/correlation/, e.g. `block_moments`), and the statistic's
row in the `correlation_stats` and `match_methods` lookup tables (a new `sql/tables/NNN_<table>.sql`
with `INSERT OR IGNORE`, as `210_sae_architectures.sql` adds gated), which `correlation_runs.stat`
references. `featstore.correlation.correlate` and the CLI's `--stat` choices read this registry; nothing else
lists the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

from featstore.errors import FeatstoreError


@dataclass(frozen=True)
class Statistic:
    """How one correlation statistic turns two SAEs' activations into Pearson r per feature pair."""

    name: str
    summary: str
    rows: str                      # table macro (sae, corpus) -> (key, feature, x): what is correlated
    kernel: str                    # named query aggregating one block of pairs into corr_work.found
    implicit_zeros: bool = False   # r over every token: rows pre-normalised, best never-co-firing partner searched
    keyed_by_tok: bool = True      # keys are token occurrences (checked against the corpus's tok range)
    needs_token_rows: bool = False  # reads `tokens` (token types), so the corpus must have token rows


@dataclass(frozen=True)
class MatchMethod:
    """How a feature's match on the other side is chosen from a run's correlations."""

    name: str
    summary: str
    query: str                     # named query writing corr_work.best_{side}
    macro: str                     # the sql/ macro it calls


STATISTICS: dict[str, Statistic] = {}
MATCH_METHODS: dict[str, MatchMethod] = {}


def register(item: Statistic | MatchMethod) -> Statistic | MatchMethod:
    """Add a statistic or match method to its registry (a name registers once)."""
    registry = STATISTICS if isinstance(item, Statistic) else MATCH_METHODS
    if item.name in registry:
        raise FeatstoreError(f"{item.name!r} is registered already")
    registry[item.name] = item
    return item


def get_statistic(name: str) -> Statistic:
    if name not in STATISTICS:
        raise FeatstoreError(f"unknown statistic {name!r}; use one of {', '.join(STATISTICS)}")
    return STATISTICS[name]


def statistic_names() -> tuple[str, ...]:
    return tuple(STATISTICS)


all_tokens = register(Statistic(
    "all_tokens", "r over every token occurrence of the corpus; a feature's implicit zeros count exactly",
    rows="corr_occurrences", kernel="correlation/block_all_tokens", implicit_zeros=True,
))
cofiring = register(Statistic(
    "cofiring", "r over the occurrences where both features fire",
    rows="corr_occurrences", kernel="correlation/block_moments",
))
token_type_mean = register(Statistic(
    "token_type_mean", "the paper's: r over per-token-type mean activations (where each feature fires)",
    rows="corr_type_means", kernel="correlation/block_moments", keyed_by_tok=False, needs_token_rows=True,
))
best_match = register(MatchMethod(
    "best_match", "each feature's highest-r partner on the other side, co-firing or not (r NULL: never fires)",
    query="correlation/best_matches", macro="corr_best_matches",
))
