"""Background work: the job queue's backends and the handlers that process tickets."""
