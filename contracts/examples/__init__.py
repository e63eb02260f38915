"""Reference clients of each provider (flows and error types), shipped so that examples run outside the repository."""
