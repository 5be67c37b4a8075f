-- The first $limit members of the feature families (view family_members).
SELECT * FROM family_members LIMIT $limit;
