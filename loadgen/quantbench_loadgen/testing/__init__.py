"""Testing utilities shipped with the load generator: the scripted ground-truth server."""
