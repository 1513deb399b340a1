"""Retry backoff arithmetic. Pure: the random factor comes from the caller (the leader)."""

from __future__ import annotations

from raftsched.core.model import RetryPolicy


def has_policy(p: RetryPolicy) -> bool:
    """A job opts into retries and the dead-letter queue with max_attempts >= 1."""
    return p.max_attempts > 0


def should_retry(p: RetryPolicy, failures: int) -> bool:
    """After `failures` failed attempts (this one included): is another attempt due?"""
    return has_policy(p) and failures < p.max_attempts


def backoff_delay(p: RetryPolicy, failures: int, u: float = 0.5) -> float:
    """Seconds to wait before the attempt after the `failures`-th failure (failures >= 1).

    base = min(max_delay, initial * multiplier**(failures-1)); the result is
    base * (1 + jitter * (2u - 1)) for u in [0, 1): within +-jitter of base, and
    exactly base when jitter is 0 (or u is 0.5).
    """
    n = max(1, failures)
    try:
        base = p.initial_delay_s * p.multiplier ** (n - 1)
    except OverflowError:
        base = p.max_delay_s
    base = min(p.max_delay_s, base)
    u = min(max(u, 0.0), 1.0)
    return max(0.0, base * (1.0 + p.jitter * (2.0 * u - 1.0)))


def validate_policy(p: RetryPolicy) -> str | None:
    """None if acceptable, else a message naming the field."""
    if not 0 <= p.max_attempts <= 1000:
        return f"retry.max_attempts is {p.max_attempts}; it must be between 0 (no retries) and 1000"
    if not 0 <= p.initial_delay_s <= 86400 or p.initial_delay_s != p.initial_delay_s:
        return f"retry.initial_delay_seconds is {p.initial_delay_s}; it must be between 0 and 86400 seconds"
    if not 1.0 <= p.multiplier <= 100.0:
        return f"retry.multiplier is {p.multiplier}; it must be between 1 and 100"
    if not 0 <= p.max_delay_s <= 7 * 86400 or p.max_delay_s != p.max_delay_s:
        return f"retry.max_delay_seconds is {p.max_delay_s}; it must be between 0 and 604800 seconds"
    if p.max_attempts and p.max_delay_s < p.initial_delay_s:
        return (f"retry.max_delay_seconds ({p.max_delay_s:g}) is below "
                f"retry.initial_delay_seconds ({p.initial_delay_s:g}); raise max_delay_seconds")
    if not 0.0 <= p.jitter <= 1.0:
        return f"retry.jitter is {p.jitter}; it must be a fraction between 0 and 1"
    return None
