"""Packaging an app into one verifiable file and deploying it to devices (Jetsons) over SSH.

``package``: the .gfpkg format (:mod:`.package`); ``targets``: what each device kind runs;
``transport``: the system's ssh and rsync; ``agent``: the device-side helper (standard library
only; copied to the device); ``remote``: deploy and the remote verbs; ``cli``: the subcommands.
"""


class DeployError(Exception):
    """A user-facing problem: printed as one line, never as a traceback."""
