"""Prefect block types: Visma.net account, Nmbrs account, administration mapping.

Imported by `nmbrs_visma/__init__.py` (a `prefect.collections` entry point), so Prefect can load them by slug.
"""

from nmbrs_visma.blocks.mapping import (
    AdministrationMappingBlock,
    LoadedMappings,
    load_mappings,
    mapping_block_name,
)
from nmbrs_visma.blocks.nmbrs import NmbrsAccount
from nmbrs_visma.blocks.oauth import OAuthAccount
from nmbrs_visma.blocks.visma_net import VismaNetAccount

__all__ = [
    "AdministrationMappingBlock",
    "LoadedMappings",
    "NmbrsAccount",
    "OAuthAccount",
    "VismaNetAccount",
    "load_mappings",
    "mapping_block_name",
]
