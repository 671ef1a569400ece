"""traintop terminal UI (Textual)."""
