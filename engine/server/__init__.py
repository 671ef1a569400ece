"""The daemon process: the socket server (``daemon``), its request handlers
(``service``), the supervisor that launches, adopts and folds runs (``supervisor``), the
SQLite store (``store``, ``points``, ``chunks``, ``views``), GPU and host telemetry, and
``rebuild``, which remakes the store from the run directories.

Never imports torch or textual; the run side never imports this group.
"""
