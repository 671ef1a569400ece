"""The run side: what runs inside a run's own processes.

The shim (one per run, detached, it outlives the daemon), the worker that calls a
workload's ``train(run)``, the ``Run`` object user code logs through, the spool writer,
checkpoints, the control-file reader and the wrapper for a plain command. The only
group that imports torch. Never imports ``engine.server``.
"""
