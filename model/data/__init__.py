"""Data sets: loading (``model.data.loaders``) and checking a data folder (``python -m model.data check``)."""
