"""The progress bar the embedded training jobs share (tqdm, from the ``tasks`` extra, when installed)."""

from __future__ import annotations

from typing import Any


def progress_bar(total: int, enabled: bool | None, unit: str = "it") -> Any:
    """A tqdm bar over ``total`` steps, or None. ``enabled``: True, False, or None for "only on a terminal"."""
    if enabled is False:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, disable=None if enabled is None else not enabled, leave=False, unit=unit)
