"""Incoming documents: extract text safely, pull out key fields, and hand them to the ERP.

Pure core (no torch, no fastapi): :mod:`.model` holds the shared types, :mod:`.extract` turns
bytes into text within :class:`~.model.DocumentLimits`, :mod:`.fields` finds the key fields.
"""
