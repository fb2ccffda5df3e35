"""Errors that reach a person: every one carries a message they can act on.

The CLI turns them into one line and exit code 2; the gateway into a 4xx JSON body.
"""

from __future__ import annotations


class DeskpilotError(Exception):
    """Base class. ``status`` is the HTTP status the gateway answers with."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(DeskpilotError):
    """Settings or a config file are wrong; the process should not start."""

    code = "config_error"
    status = 500


class InputDataError(DeskpilotError):
    """A data file or a request body cannot be used as given."""

    code = "invalid_input"
    status = 422


class ModelNotFoundError(DeskpilotError):
    """A base model cannot be found offline."""

    code = "model_not_found"
    status = 404


class AdapterNotFoundError(DeskpilotError):
    """No adapter (or no such version) is registered for a task."""

    code = "adapter_not_found"
    status = 404


class AuthError(DeskpilotError):
    """Missing or wrong credentials."""

    code = "unauthorized"
    status = 401


class ForbiddenError(DeskpilotError):
    code = "forbidden"
    status = 403


class NotFoundError(DeskpilotError):
    code = "not_found"
    status = 404


class ConflictError(DeskpilotError):
    code = "conflict"
    status = 409


class PayloadTooLargeError(DeskpilotError):
    code = "payload_too_large"
    status = 413


class PolicyError(DeskpilotError):
    """A routing policy file is invalid; the message names the file and line."""

    code = "invalid_policy"
    status = 422


class ActionError(DeskpilotError):
    """An outside system refused an action. ``transient`` ones are retried with backoff."""

    code = "action_failed"
    status = 502

    def __init__(self, message: str, *, transient: bool, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.transient = transient
