"""The scheduler: a pure placement policy, and the loop that applies it to the database."""
