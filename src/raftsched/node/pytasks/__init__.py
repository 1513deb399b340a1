"""Python task jobs (issue 14): a warm pool of worker processes per node.

`pool.PyPool` keeps `python_workers` processes (`child.py`) running and hands each
one task at a time over a pipe; `proc.PyWorker` is one such process. Keep this
package's __init__ empty of imports: the worker processes import `child` only.
"""
