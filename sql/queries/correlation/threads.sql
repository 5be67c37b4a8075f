-- The connection's thread count: how many workers an engine runs side by side (`featstore correlate --threads`).
SELECT current_setting('threads');
