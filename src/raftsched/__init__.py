"""raftsched: a Raft-replicated, peer-to-peer distributed job scheduler."""

__version__ = "0.1.0"
