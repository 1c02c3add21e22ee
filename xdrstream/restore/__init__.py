"""The restore application: a reference server that feeds streams to an endpoint, the
client that restores and saves images through it, and their CLI commands."""
