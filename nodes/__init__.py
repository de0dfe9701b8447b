"""The node agent run on every compute host. It talks to the portal over HTTP with a
node token, takes starts and stops from its own RQ queue, and never opens the database."""
