"""Chaos tests: the engine under a locked store, bad records, a full disk, kills and corruption."""
