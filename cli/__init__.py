"""The `podium` command and the in-session SDK. Nothing here imports the server side."""
