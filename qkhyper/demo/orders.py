"""Demo `orders` service."""

from .common import make_app

app = make_app("orders", [{"id": 1, "user_id": 1, "item": "keyboard"}, {"id": 2, "user_id": 2, "item": "compiler"}])
