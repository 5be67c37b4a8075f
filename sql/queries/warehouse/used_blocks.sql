-- How many blocks of the catalog file are in use (not free): the file must hold at least that many.
SELECT used_blocks FROM pragma_database_size() WHERE database_name = current_database();
