"""The one capacity predicate, shared by placement (leader) and apply (every replica)."""

from __future__ import annotations

from raftsched.core.model import Resources


def fits(capacity: Resources, allocated: Resources, request: Resources) -> bool:
    """True if `request` fits in what `capacity` leaves after `allocated`."""
    return (
        allocated.cpu_millis + request.cpu_millis <= capacity.cpu_millis
        and allocated.memory_mib + request.memory_mib <= capacity.memory_mib
    )


def could_ever_fit(capacity: Resources, request: Resources) -> bool:
    """True if the request fits on an empty node of this capacity."""
    return fits(capacity, Resources(0, 0), request)
