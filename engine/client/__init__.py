"""The clients: the synchronous and asyncio socket clients, the command line, the
demo's runs and the text of a run's detail. The TUI uses this group and
``engine.common`` only.
"""
