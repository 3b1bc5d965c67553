"""Edges across processes and hosts: ZeroMQ transport (:mod:`.transport`), same-host shared
memory (:mod:`.shm`), CURVE keys and the loopback rule (:mod:`.security`), and the splitting of
one app into processes (:mod:`.processes`)."""
