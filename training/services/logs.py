"""What a run's log tail keeps: the training child's real output, without the noise.

Libraries print progress bars (tqdm, "Loading weights 100%|...|"), deprecation warnings
with the line of code that raised them (``warnings.warn(...)``), and the Trainer prints
every step's metrics as a dict, which the run page already charts. Those lines are
dropped; everything else (our own log lines, tracebacks, error messages, other warnings'
messages) is kept, so a real error is never hidden.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# "Loading weights:  40%|████      | 8/20 [00:00<00:00, 22069.48it/s]"
_PROGRESS_BAR = re.compile(r"\d+%\|.*\||\d+(?:\.\d+)?(?:it/s|s/it)\]")
# "/path/training_args.py:1541: FutureWarning: `x` is deprecated ..."
_WARNING_HEADER = re.compile(r"^\S+\.py:\d+: (\w*Warning): ")
_NOISY_WARNINGS = frozenset(
    {"FutureWarning", "DeprecationWarning", "PendingDeprecationWarning", "TRLExperimentalWarning"}
)
# "{'loss': '0.6931', 'grad_norm': '1.2', ...}" (transformers' PrinterCallback)
_METRICS_DICT = re.compile(r"^\{'[^']+': .*\}$")


class LogNoiseFilter:
    """Line by line (the order matters: a dropped warning's source line follows it)."""

    def __init__(self) -> None:
        self._skip_source_line = False

    def keep(self, line: str) -> bool:
        stripped = line.strip()
        if self._skip_source_line:
            self._skip_source_line = False
            if line[:1].isspace():  # the warning's source line, printed indented
                return False
        if not stripped or stripped.startswith("warnings.warn("):
            return False
        if _PROGRESS_BAR.search(line) or _METRICS_DICT.match(stripped):
            return False
        header = _WARNING_HEADER.match(stripped)
        if header and header.group(1) in _NOISY_WARNINGS:
            self._skip_source_line = True
            return False
        return True


def log_lines_clean(lines: Iterable[str]) -> list[str]:
    """``lines`` without progress bars, deprecation warnings (header and the source line
    printed under it), ``warnings.warn(`` lines and metric dicts."""
    noise = LogNoiseFilter()
    return [line for line in lines if noise.keep(line)]
