"""Suite-wide setup. Its presence puts tests/ on sys.path, so shared support modules
(``adapters_support``: the tiny offline BERT and synthetic tickets) import by name."""
