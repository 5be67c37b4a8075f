-- Explanation transfer: a parent feature's explanation scored against its matched child feature's
-- activations (featstore transfer), beside the parent's and the child's scores on their own
-- explanations (same explainer and simulator). transfer_score close to parent_score means the
-- feature kept its meaning through fine-tuning or merging.
CREATE OR REPLACE VIEW explanation_transfer AS
SELECT pk.model AS parent_model, t.source_sae AS parent_sae, t.source_feature AS parent_feature,
       ck.model AS child_model, t.sae AS child_sae, t.feature AS child_feature,
       t.corpus, t.explainer, t.simulator,
       own_parent.score AS parent_score,
       t.score AS transfer_score,
       own_child.score AS child_score,
       e.explanation AS parent_explanation
FROM scores t
LEFT JOIN scores own_parent
       ON own_parent.kind = 'self' AND own_parent.sae = t.source_sae AND own_parent.feature = t.source_feature
      AND own_parent.corpus = t.corpus AND own_parent.explainer = t.explainer
      AND own_parent.explainer_version = t.explainer_version
      AND own_parent.simulator = t.simulator AND own_parent.simulator_version = t.simulator_version
LEFT JOIN scores own_child
       ON own_child.kind = 'self' AND own_child.sae = t.sae AND own_child.feature = t.feature
      AND own_child.corpus = t.corpus AND own_child.explainer = t.explainer
      AND own_child.explainer_version = t.explainer_version
      AND own_child.simulator = t.simulator AND own_child.simulator_version = t.simulator_version
LEFT JOIN explanations e
       ON e.sae = t.source_sae AND e.feature = t.source_feature AND e.corpus = t.corpus
      AND e.explainer = t.explainer AND e.prompt_version = t.explainer_version
LEFT JOIN saes pk ON pk.id = t.source_sae
LEFT JOIN saes ck ON ck.id = t.sae
WHERE t.kind = 'transfer'
ORDER BY t.source_sae, t.sae, t.source_feature;
