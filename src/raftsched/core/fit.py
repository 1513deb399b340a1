"""The one capacity predicate, shared by placement (leader) and apply (every replica)."""

from __future__ import annotations

from raftsched.core.model import Resources


def fits(capacity: Resources, allocated: Resources, request: Resources) -> bool:
    """True if `request` fits in what `capacity` leaves after `allocated`."""
    return (
        allocated.cpu_millis + request.cpu_millis <= capacity.cpu_millis
        and allocated.memory_mib + request.memory_mib <= capacity.memory_mib
    )


def shortfall(capacity: Resources, allocated: Resources, request: Resources) -> tuple[str, str] | None:
    """None if `fits`, else the failing check ("cpu" first, else "memory") and a detail
    such as "cpu 1800+500m > 2000m"."""
    if fits(capacity, allocated, request):
        return None
    if allocated.cpu_millis + request.cpu_millis > capacity.cpu_millis:
        return "cpu", (f"cpu {allocated.cpu_millis}+{request.cpu_millis}m > "
                       f"{capacity.cpu_millis}m")
    return "memory", (f"memory {allocated.memory_mib}+{request.memory_mib} MiB > "
                      f"{capacity.memory_mib} MiB")


def could_ever_fit(capacity: Resources, request: Resources) -> bool:
    """True if the request fits on an empty node of this capacity."""
    return fits(capacity, Resources(0, 0), request)
