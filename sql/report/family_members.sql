-- One row per feature family (feature_families, threshold 0.8): how many models it reaches, its weakest
-- link and its members (model:feature), widest and strongest families first. The report's feature-family table.
CREATE OR REPLACE VIEW family_members AS
SELECT family, corpus,
       count(DISTINCT model) AS models,
       max(depth) + 1 AS generations,
       min(r) AS weakest_link_r,
       string_agg(DISTINCT model || ':' || feature, '  ') AS members
FROM feature_families
GROUP BY family, corpus
ORDER BY models DESC, generations DESC, weakest_link_r DESC, family;
