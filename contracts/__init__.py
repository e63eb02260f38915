"""stemmock's contract kit: checks that a mock or a client keeps the providers' contract."""
