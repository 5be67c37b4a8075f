-- Figure 2's boxes: every model, oldest first.
SELECT name FROM models ORDER BY created_at, name;
