"""Order gRPC servicers."""
