"""The gateway tests' running stack (`qkhyper serve` behind `qkhyper gateway`), for the gateway's metrics."""

from tests.gateway.conftest import stack as stack
