"""Read every saved block of one type with its name."""

from __future__ import annotations

from typing import TypeVar

from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

B = TypeVar("B", bound=Block)


def read_named_blocks(block_type: type[B], *, include_secrets: bool = False) -> list[tuple[str, B]]:
    """(name, block) for each named block of `block_type`, sorted by name; empty when the type is unknown.

    The API's per-type listing answers every document of the type at once (it takes no offset or limit).
    Without `include_secrets` the secret fields hold Prefect's mask, enough to show whether one is set.
    """
    with get_client(sync_client=True) as client:
        try:
            documents = client.read_block_documents_by_type(
                block_type.get_block_type_slug(), include_secrets=include_secrets
            )
        except ObjectNotFound:  # the block type was never registered: no block of it exists
            return []
    found: list[tuple[str, B]] = []
    for document in documents:
        if document.name and not document.is_anonymous:
            block = block_type.model_validate(document.data)
            block._block_document_name = document.name
            block._block_document_id = document.id
            found.append((document.name, block))
    return sorted(found, key=lambda item: item[0])
