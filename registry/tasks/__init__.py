"""Background jobs that run inside the server, each on one worker or replica at a time."""
