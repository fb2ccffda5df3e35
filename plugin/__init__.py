"""deskpilot: fine-tuned LoRA classifiers and responders for helpdesk and ERP queues.

Importing this package is cheap: torch, transformers and fastapi load only when a
command or the gateway needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
