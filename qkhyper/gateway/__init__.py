"""`qkhyper gateway`: the reverse proxy in front of the apps."""
