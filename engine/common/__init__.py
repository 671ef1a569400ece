"""What every traintop process agrees on: the wire protocol, the vocabulary of runs
(states, ids, names, what each state allows), hyper-parameter overrides, the chart's EMA,
how numbers are shown, the environment a run gets and how a script's output lines are
read as metrics.

Standard library only: no files, no sockets, no torch, no textual. Every other group
may import it.
"""
