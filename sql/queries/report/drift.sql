-- Every lineage-initialised SAE's drift per slice (view drift_summary): the report's agreement section.
SELECT * FROM drift_summary;
