"""The bundled demo: two FastAPI services that `qkhyper serve` runs on a fresh clone."""
