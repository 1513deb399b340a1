"""Fixtures shared by the unit tests."""

from tests.unit.raft_sim import make_net  # noqa: F401 (the simulated-network fixture)
