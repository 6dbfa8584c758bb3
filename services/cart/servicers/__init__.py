"""gRPC servicers of the cart service: proto ⇄ use-case translation only."""
