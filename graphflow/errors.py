"""The framework's exceptions, in a module of their own: the compiled core (see
``graphflow.compiled``) cannot define exception classes, so it imports them from here."""


class QueueFull(RuntimeError):
    """A ``block`` queue is full and nothing can make room (only in the test harness)."""
