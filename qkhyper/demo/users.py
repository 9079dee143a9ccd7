"""Demo `users` service."""

from .common import make_app

app = make_app("users", [{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}])
