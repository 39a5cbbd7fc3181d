"""Secrets for live sources: read from environment variables, kept out of messages and provenance.

params.yaml is tracked by git and DVC copies params values into dvc.lock, so a secret never goes
into params: a source names the environment variable that holds it instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from stages.core.errors import InputDataError

ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MASK = "***"


def read_env_secret(variable: str, key: str, source: str) -> str:
    """Return the value of environment variable `variable`, raising InputDataError when it is unset or empty.

    `key` is the params key that names the variable and `source` the source name, both for the message.
    """
    value = os.environ.get(variable)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise InputDataError(
            f"source `{source}`",
            f"environment variable {variable} (named by `{key}`) {state}",
            f"Export {variable} in the shell that runs the stage (for example `export {variable}=...` "
            "before `dvc repro`), or change the variable name in params.yaml.",
        )
    return value


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in `text`, also in its URL-encoded forms, by `***`."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update({secret, quote(secret, safe=""), quote_plus(secret)})
    # Longer forms first, so a secret that contains another one is masked whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


class RedactingFilter(logging.Filter):
    """Masks secrets in the records of a library logger (urllib3 logs request URLs at DEBUG)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = redact(message, self.secrets)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


# Library loggers that may print URLs, connection strings or request lines.
LIBRARY_LOGGERS = (
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "requests",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "psycopg",
)


@contextlib.contextmanager
def redacted_library_logs(secrets: Iterable[str]) -> Iterator[None]:
    """Mask `secrets` in records of the library loggers above while the block runs."""
    log_filter = RedactingFilter(secrets)
    loggers = [logging.getLogger(name) for name in LIBRARY_LOGGERS]
    for library_logger in loggers:
        library_logger.addFilter(log_filter)
    try:
        yield
    finally:
        for library_logger in loggers:
            library_logger.removeFilter(log_filter)
