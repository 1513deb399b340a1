"""gRPC edge: thin servicers that validate and delegate, clients, conversions."""
