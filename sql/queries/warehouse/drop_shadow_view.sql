-- The temporary `activations` view a session made over its own folder's files (the stored view named
-- another folder) goes once this session has rebuilt the stored view for its folder.
DROP VIEW IF EXISTS temp.main.activations;
