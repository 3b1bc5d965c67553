"""net: bridges between apps in other processes or on other hosts (Isaac's TcpPublisher and
TcpSubscriber): a ``net.Publisher`` sends what it receives to every ``net.Subscriber``
connected to its endpoint, over ZeroMQ, typed and versioned (``graphflow.channels``)."""
