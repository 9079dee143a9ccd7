"""The control socket: steering a running supervisor (`qkhyper status`, `restart`, `scale`, `reload`, `stop`)."""
