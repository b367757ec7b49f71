"""Logging set-up shared by every command: one line per event, with the time and the component.

Secrets never reach a log or a printed line: :func:`mask_secrets` blanks the password of a URI, a
bearer token and key-like query parameters in text, :func:`mask_settings` the values of settings
whose name says they are secret; every log record passes through the former.
"""

from __future__ import annotations

import logging
import re
from typing import Any

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

_SECRET_WORDS = {"secret", "password", "passwd", "credential", "credentials", "token"}
_SECRET_ENDINGS = ("api_key", "api_keys", "private_key", "secret_key", "signing_key")
_SECRET_TEXT = [
    (re.compile(r"(\b[a-z][\w+.-]*://[^/\s:@]*:)[^@\s/]+@", re.I), r"\1***@"),  # scheme://user:password@host
    (re.compile(r"(\bBearer\s+)[^\s'\"]+", re.I), r"\1***"),
    (re.compile(r"([?&](?:api[_-]?key|token|password|secret)=)[^&\s'\"]+", re.I), r"\1***"),
]


def is_secret_name(name: str) -> bool:
    """True for a setting or property whose value is a secret (``lake.properties``' ``s3.secret-access-key``,
    ``serving.api_keys``), false for ``max_tokens`` or ``api_key_env`` (a variable's name, not its value)."""
    lowered = name.lower()
    return bool(_SECRET_WORDS & set(re.split(r"[_.\-]", lowered))) or lowered.endswith(_SECRET_ENDINGS)


def mask_secrets(text: str) -> str:
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def _mask_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    if isinstance(value, str) and value:
        return f"*** ({len(value)} chars)"
    return value


def mask_settings(data: Any) -> Any:
    """A settings dump (``model_dump(mode="json")``) with secret values masked and URI passwords blanked."""
    if isinstance(data, dict):
        return {k: _mask_value(v) if is_secret_name(str(k)) else mask_settings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [mask_settings(v) for v in data]
    return mask_secrets(data) if isinstance(data, str) else data


class _MaskSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_secrets(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt="%H:%M:%S", force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_MaskSecrets())
    for noisy in ("py4j", "kafka", "opensearch", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # opensearch-py logs every failed request with its traceback; our clients log their retries and the
    # command reports the error in one line, so only its errors pass
    logging.getLogger("opensearch").setLevel(logging.ERROR)
