"""Process titles, so `ps`, `top` and `systemctl status` say which process is which.

Without them every qkhyper process reads `python -m qkhyper...`, and a
worker's command line is a long base64 spec: finding "the users worker that
eats memory" meant matching pids with the ready table. With them the
supervisor is `qkhyper: supervisor serve /srv/app/hypercorn.toml` and each
worker `qkhyper: users worker 2` (its slot's number, kept across rolls and
restarts). A title is a convenience: failing to set one never stops a start.
"""

from __future__ import annotations


def set_title(title: str) -> str | None:
    """Set this process's title; None when done, else why not (for the caller to log or ignore)."""
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except Exception as exc:  # a missing or broken module: the process runs on with its old title
        return f"{type(exc).__name__}: {exc}"
    return None
