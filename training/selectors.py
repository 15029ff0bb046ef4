"""Reads for training runs and adapter deployments."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AdapterRef:
    name: str
    path: Path


def adapter_live(*, adapter_name: str = "") -> AdapterRef | None:
    """The LoRA adapter the ``hf`` provider should use: ``adapter_name`` if given and
    deployed, else the organisation's live adapter, else None (base model only).

    (Deployments are built in the training issue; until then the base model answers.)
    """
    return None
