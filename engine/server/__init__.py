"""The daemon process: the socket server (``daemon``), its request handlers
(``service``, with ``requests``, ``run_lookup``, ``read_requests`` and ``run_requests``),
the supervisor that launches, adopts and follows runs (``supervisor``, ``live_run``,
``run_reports``), one backend per kind of run (``backends``), the SQLite store
(``store``, ``points``, ``chunks``, ``views``), GPU and host telemetry, and
``rebuild``, which remakes the store from the run directories.

Never imports torch or textual; the run side never imports this group.
"""
