"""What the resolver tells the rest of the pipeline: entity events keyed by golden id."""

from __future__ import annotations

from typing import Literal

import msgspec

EventKind = Literal["ASSIGNED", "REMOVED", "MERGED", "SPLIT", "RETIRED"]


class EntityEvent(msgspec.Struct, frozen=True, gc=False):
    """One change to the record -> golden id assignment.

    * ``ASSIGNED``: ``record_id`` now belongs to ``golden_id`` (``previous_golden_id`` is where it
      was; equal to ``golden_id`` when an upserted record stayed put, so the golden record can be
      rebuilt from its new values).
    * ``REMOVED``: ``record_id`` was deleted and left ``golden_id``.
    * ``MERGED``: the clusters of ``others`` (retired golden ids) joined ``golden_id``, the oldest.
    * ``SPLIT``: records of ``golden_id`` moved to the new golden ids ``others``; ``golden_id`` stays
      with the larger part.
    * ``RETIRED``: ``golden_id`` has no records left.
    """

    kind: EventKind
    golden_id: str
    record_id: str | None = None
    previous_golden_id: str | None = None
    others: tuple[str, ...] = ()
