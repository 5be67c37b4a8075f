"""`featstore report`: the paper's figures (`figures.py`), HTML pieces shared with the browser
(`markup.py`) and the page built from the warehouse's views (`build.py`)."""
