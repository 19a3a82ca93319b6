"""Helpers that build offline test material (busybox root filesystems,
OCI bundles) from Debian's busybox-static. Used by the tests, the benches and
the installer's demo image; nothing here is imported by the engine."""
