-- A match method's name, checked against match_methods: an unknown one is an error, not an empty result.
CREATE OR REPLACE MACRO match_method(method_name) AS (
    SELECT CASE WHEN count(*) = 1 THEN any_value(t.name)
                ELSE error('unknown match method ''' || method_name || ''' (the methods: SELECT name FROM match_methods)') END
    FROM match_methods t
    WHERE t.name = method_name
);
