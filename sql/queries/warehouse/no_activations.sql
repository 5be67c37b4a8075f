-- The body of the `activations` view while no partition is committed: its columns and types, no rows,
-- so the sql/ views built on it bind.
SELECT NULL::VARCHAR AS sae, NULL::VARCHAR AS corpus, NULL::UINTEGER AS tok, NULL::UINTEGER AS feature, NULL::FLOAT AS act
WHERE false;
