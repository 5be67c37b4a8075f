-- Feature $feature of SAE $sae: its top activations on corpus $corpus with $width tokens of context each (macro top_contexts).
SELECT * FROM top_contexts($sae, $feature, corpus_name := $corpus, width := $width);
