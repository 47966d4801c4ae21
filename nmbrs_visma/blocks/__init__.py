"""Prefect block types: Visma.net account, Nmbrs account, administration mapping."""
