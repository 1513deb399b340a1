from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cluster import TestCluster


@pytest.fixture
def cluster_factory() -> Iterator[type[TestCluster]]:
    made: list[TestCluster] = []

    def make(**kw) -> TestCluster:
        c = TestCluster(**kw)
        made.append(c)
        return c

    yield make  # type: ignore[misc]
    for c in made:
        c.close()


@pytest.fixture(scope="module")
def cluster3() -> Iterator[TestCluster]:
    """A shared 3-node cluster for tests that do not kill nodes."""
    c = TestCluster(n_nodes=3).start()
    try:
        c.wait_ready()
        yield c
    finally:
        c.close()
