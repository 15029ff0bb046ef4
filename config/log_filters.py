"""Logging filters named in ``LOGGING`` (config/settings/base.py)."""

from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """A 404 or 403 is an ordinary answer to the client: log its one line, never the
    traceback of the Http404 / PermissionDenied behind it. 5xx keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
