"""`featstore run`: experiment files (`experiment.py`) and the steps derived from them, rerun only when
their inputs change (`steps.py`)."""
