-- The features the report's Figures 3-4 show (the same showcase_matches call as the report).
SELECT DISTINCT parent_sae, parent_feature, child_sae, child_feature FROM showcase_matches(n := 2)
