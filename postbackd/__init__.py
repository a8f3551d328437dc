"""postbackd: a self-hosted conversion postback server.

Inbound request -> validated command (inbound/) -> one transaction (record.py, store/)
-> outbox -> dispatcher (delivery/) -> delivery log.
"""

__version__ = "0.1.0"
