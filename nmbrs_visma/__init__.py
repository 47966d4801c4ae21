"""nmbrs-visma: post Visma Nmbrs payroll journals to the Visma.net ERP general ledger, exactly once.

Importing the package registers its Prefect block types (it is a `prefect.collections` entry point).
"""

from __future__ import annotations

import contextlib

__version__ = "0.1.0"


def _register_blocks() -> None:
    """Import the block modules so Prefect can load blocks by slug; quiet when Prefect is absent."""
    with contextlib.suppress(ImportError):  # the core stays usable without Prefect
        from nmbrs_visma import blocks  # noqa: F401


_register_blocks()
