"""Text: corpus sources (folders, files, hub ids, the standard library), seeded generators, weighted
mixtures with a held-out validation part, tokenizers, and the tokenized evaluation slices the warehouse keys
activations by."""
