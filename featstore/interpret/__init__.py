"""Interpretation: sampling activating examples, explainer/simulator backends (built-in, HF, OpenAI-compatible)
and explanation scores."""
