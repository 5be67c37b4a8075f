-- Every method's scored candidate pairs of ($sae_a, $sae_b) on corpus $corpus (macro pair_evidence), to assign one-to-one.
SELECT * FROM pair_evidence($sae_a, $sae_b, $corpus);
