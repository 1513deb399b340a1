"""The benchmarks' Python task: `raftsched.dev.noop:noop`, in a module of its own that
imports nothing, so a worker's first call costs what a user's small task module does
(not the whole bench stack: grpc, the client, the config...)."""


def noop() -> None:
    """Nothing."""
