"""What runs inside QuantBench benchmark Jobs: load generator and accuracy runner."""
