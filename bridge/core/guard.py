"""The mass-change guard as a running bound, so that writes can overlap the reads.

A cycle that would change more links than `sync.max_changes_per_cycle` must write nothing.  The
plain way to keep that promise is to plan every link before writing any, which serializes a
rate-limited full read and rate-limited writes.  This guard keeps the same promise while links are
still being planned: it releases writes only once even the worst case, every link not yet planned
also changing, stays within the limit.  So a cycle that ends over the limit has released nothing,
and a cycle that ends within it has held nothing back by the end.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MassChangeGuard:
    """Counts links as they are planned; says when their writes may start."""

    limit: int
    unplanned: int
    force: bool = False
    changing: int = 0

    def planned(self, links: int, changing: int) -> None:
        """`links` more links are planned, `changing` of them with writes."""
        if changing > links or links > self.unplanned:
            raise ValueError(f"planned {links} links ({changing} changing) with {self.unplanned} left to plan")
        self.unplanned -= links
        self.changing += changing

    @property
    def releasable(self) -> bool:
        """Writes may start now: no outcome of the links still unplanned can cross the limit."""
        return self.force or self.changing + self.unplanned <= self.limit

    @property
    def refused(self) -> bool:
        """Over the limit (only final once every link is planned); `force` overrides it once."""
        return not self.force and self.changing > self.limit
