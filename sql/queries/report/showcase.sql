-- The $n strongest matches of each edge on each slice (macro showcase_matches), shown as Figures 3–4.
SELECT * FROM showcase_matches(n := $n);
