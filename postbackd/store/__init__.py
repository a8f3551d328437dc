"""All SQL, no rules: tables, engine, one module per aggregate, the outbox.

Store functions take a connection and never commit; the caller owns the transaction.
"""
