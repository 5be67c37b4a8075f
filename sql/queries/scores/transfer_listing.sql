SELECT parent_feature, child_feature,
       round(parent_score, 3) AS parent, round(transfer_score, 3) AS transfer, round(child_score, 3) AS child,
       parent_explanation
FROM explanation_transfer
WHERE parent_sae = $parent_sae AND child_sae = $child_sae AND corpus = $corpus AND simulator = $simulator;
