import os

# gRPC must not restart its threads in the node's forked snapshot child
# (replica/durable.py): set before gRPC is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

from raftsched.cli.main import main

raise SystemExit(main())
