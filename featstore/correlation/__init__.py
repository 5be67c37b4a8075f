"""Correlation between the features of two SAEs over the same tokens: the statistics (`statistics.py`),
the checked input rows (`inputs.py`), the engines that compute them (`engines/`) and the run that stores
their results (`correlate.py`)."""
