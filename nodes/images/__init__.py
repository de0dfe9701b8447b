"""Images for the Docker runtime, built on this machine with no registry reachable."""
