"""The one capacity predicate, shared by placement (leader) and apply (every replica)."""

from __future__ import annotations

from raftsched.core.model import Resources


def shortfall(capacity: Resources, allocated: Resources, request: Resources) -> tuple[str, str] | None:
    """None if `request` fits in what `capacity` leaves after `allocated`, else the
    failing check ("cpu" or "memory") and a detail such as "cpu 1800+500m > 2000m"."""
    if allocated.cpu_millis + request.cpu_millis > capacity.cpu_millis:
        return "cpu", (f"cpu {allocated.cpu_millis}+{request.cpu_millis}m > "
                       f"{capacity.cpu_millis}m")
    if allocated.memory_mib + request.memory_mib > capacity.memory_mib:
        return "memory", (f"memory {allocated.memory_mib}+{request.memory_mib} MiB > "
                          f"{capacity.memory_mib} MiB")
    return None


def fits(capacity: Resources, allocated: Resources, request: Resources) -> bool:
    """True if `request` fits in what `capacity` leaves after `allocated`."""
    return shortfall(capacity, allocated, request) is None


def could_ever_fit(capacity: Resources, request: Resources) -> bool:
    """True if the request fits on an empty node of this capacity."""
    return fits(capacity, Resources(0, 0), request)
