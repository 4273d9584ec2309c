"""Errors raised by the latent store.

All of them are :class:`~wfvae_cli.errors.WfvaeError` subclasses: the CLI prints their one-line message
(which names the store path and the fix) instead of a traceback. The subclasses exist so that library
callers (the encode pipeline, tests) can tell a refused resume from a broken ownership rule.
"""

from __future__ import annotations

from wfvae_cli.errors import WfvaeError


class StoreError(WfvaeError):
    """The store at a path is missing, malformed, or used in a way it does not allow."""


class IncompatibleStoreError(StoreError):
    """An existing store was written with settings that differ from the ones of the new run."""


class ShardOwnershipError(StoreError):
    """A writer touched samples outside the shard it owns, or a shard already owned by another writer.

    Zarr silently loses writes when two writers update different chunks of one shard, so the store
    refuses such writes loudly instead of corrupting data quietly.
    """


class UnreadableSampleError(StoreError):
    """A row cannot be read back: its latents are missing (a deleted shard file or chunk), unreadable (a checksum
    mismatch) or not encoded yet. Raised instead of returning the array's NaN fill value, which would look like
    data to a training loop."""
