-- A published run's part rows go: its parts are the partition's files now.
DELETE FROM ingest_parts WHERE run = $run;
