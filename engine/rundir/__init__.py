"""The state directory on disk: the contract between the daemon, the shims and workers,
and the clients.

Where each file lives (``paths``), its modes and clean-up (``state_dir``), the spool's
records and the control file, both read with one tail reader (``line_tail``), checkpoint
file names and the disk-space guard. Imports only ``engine.common``.
"""
