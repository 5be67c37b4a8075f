"""Matching features between SAEs: evidence from several methods, and policies over it (see docs/matching.md)."""

from featstore.matching.evidence import build_evidence, slices_to_match
from featstore.matching.methods import COMPUTED, METHODS, POLICIES

__all__ = ["COMPUTED", "METHODS", "POLICIES", "build_evidence", "slices_to_match"]
