"""Request parameters -> a validated command, or an InputError with the seed's code (pure)."""
