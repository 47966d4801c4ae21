"""nmbrs-visma: post Visma Nmbrs payroll journals to the Visma.net ERP general ledger, exactly once.

Importing the package registers its Prefect block types (it is a `prefect.collections` entry point).
"""

from __future__ import annotations

__version__ = "0.1.0"


def _register_blocks() -> None:
    """Import the block modules so Prefect can load blocks by slug; quiet when Prefect is absent."""
    try:
        from nmbrs_visma import blocks  # noqa: F401
    except ImportError:  # pragma: no cover - the core is usable without Prefect
        pass


_register_blocks()
