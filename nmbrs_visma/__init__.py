"""nmbrs-visma: post Visma Nmbrs payroll journals to the Visma.net ERP general ledger, exactly once.

Importing the package imports nothing else: the command line's `--help` answers without Prefect. Prefect
registers the block types through the `prefect.collections` entry point, `nmbrs_visma.blocks`.
"""

from __future__ import annotations

__version__ = "0.1.0"
