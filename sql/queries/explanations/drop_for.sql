-- Everything the interpretability stage stored for SAE $sae and/or corpus $corpus (NULL: any):
-- simulations and scores (also those scoring another SAE with $sae's explanations, i.e. transfer
-- rows naming it on either side), explanations, and the drawn samples.
DELETE FROM simulations WHERE score_id IN (
    SELECT id FROM scores
    WHERE ($sae IS NULL OR sae = $sae OR source_sae = $sae) AND ($corpus IS NULL OR corpus = $corpus));
DELETE FROM scores
WHERE ($sae IS NULL OR sae = $sae OR source_sae = $sae) AND ($corpus IS NULL OR corpus = $corpus);
DELETE FROM explanations
WHERE ($sae IS NULL OR sae = $sae) AND ($corpus IS NULL OR corpus = $corpus);
DELETE FROM explanation_samples
WHERE ($sae IS NULL OR sae = $sae) AND ($corpus IS NULL OR corpus = $corpus);
