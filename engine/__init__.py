"""traintop engine: the daemon, its store, the run workers and the command line."""

__version__ = "0.1.0"
