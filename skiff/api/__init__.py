"""The Docker Engine API over a unix socket (aiohttp)."""
