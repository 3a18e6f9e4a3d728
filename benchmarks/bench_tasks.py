"""Task bodies shared by every system.

They live in an importable module (run.py puts benchmarks/ on PYTHONPATH for
the benchmark subprocess and everything it starts), so each system ships
them by reference, the way real code usually does.
"""


def noop():
    return None


def inc(x):
    return x + 1


def total(a):
    return float(a.sum())


class Noop:
    """Actor class for the actor cases: one no-op method."""

    def noop(self):
        return None
