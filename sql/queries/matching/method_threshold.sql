-- The score at which method $method calls a match persisting.
SELECT default_threshold FROM match_methods WHERE name = $method;
