"""skiff: a container engine in Python that does what Docker does.

Layers (see docs/ARCHITECTURE.md): cli -> api -> engine -> {image, storage,
registry, network}; the engine reaches the OCI runtime (skiff-runtime, runc or
crun) across a process boundary through a per-container monitor (conmon).
"""

__version__ = "0.1.0"
