"""One module per layer of the network stack that conntrace watches."""
