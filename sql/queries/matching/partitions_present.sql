-- How many of SAEs $sae_a and $sae_b have activations on corpus $corpus: activation methods need both (2).
SELECT count(*) FROM activation_partitions WHERE corpus = $corpus AND sae IN ($sae_a, $sae_b);
