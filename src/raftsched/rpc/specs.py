"""The specs of a submission, as the leader (or the node that forwards) takes them:
converted from protobuf, each distinct spec converted and validated once, and checked
placeable on some node of the cluster; or why one is refused, naming its position."""

from __future__ import annotations

from raftsched.config import ClusterConfig
from raftsched.core import acl, validate
from raftsched.core.model import JobSpec
from raftsched.ports import ReplicaView
from raftsched.rpc import convert
from raftsched.rpc.runtimecfg import cluster_nodes, largest
from raftsched.v1 import jobs_pb2


def convert_specs(pbs: list[jobs_pb2.JobSpec], cfg: ClusterConfig, replica: ReplicaView, batch: bool,
                  default_ns: str) -> list[JobSpec] | str:
    """The specs of a submission, or why one is refused (naming its position)."""
    nodes = cluster_nodes(cfg, replica)
    cap = largest(nodes)
    specs = []
    seen: dict[JobSpec, JobSpec] = {}  # identical specs are validated and stored once
    converted: dict[bytes, JobSpec] = {}
    for i, pb in enumerate(pbs):
        # ... and converted once (a batch, or submission after submission, mostly repeats
        # a few specs: convert.spec_from_pb_cached)
        spec = convert.spec_from_pb_cached(pb, default_ns, converted)
        known = seen.get(spec)
        if known is None:
            err = (acl.name_error("namespace", spec.namespace)
                   or validate.validate_spec(spec, cap) or validate.check_placeable(spec, nodes))
            if err:
                return (f"specs[{i}]: " if batch else "") + err
            known = seen[spec] = spec
        specs.append(known)
    return specs

