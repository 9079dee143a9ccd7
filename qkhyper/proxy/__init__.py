"""The proxy core shared by the gateway and static's API prefix: anyio + h11, sans-io rules."""
