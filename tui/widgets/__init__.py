"""Widgets of the traintop terminal UI, one per module."""
