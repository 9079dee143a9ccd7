"""Put first on PYTHONPATH, this hides httptools, so uvicorn (and qkhyper) take the h11 protocol."""

raise ImportError("httptools is hidden for this test run")
