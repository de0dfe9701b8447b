"""The grader: scoring jobs taken from the `grader` RQ queue."""
