"""gRPC servicers of the customer service added per proto service (loyalty, timeline)."""
