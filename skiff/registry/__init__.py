"""The distribution API client: pull, push, login (see docs/CONTRACTS.md).

``pull(images, ref, platform=, auth=, config=, progress=)`` → Image,
``push(images, ref, auth=, config=, progress=)`` → manifest digest,
``login``/``logout``/``check_login``, ``RegistryConfig``,
``reference.parse``. Imports are lazy so ``import skiff.registry`` is cheap.
"""

__all__ = ["pull", "push", "login", "logout", "check_login", "RegistryConfig", "parse"]


def __getattr__(name):
    if name == "pull":
        from .puller import pull
        return pull
    if name == "push":
        from .pusher import push
        return push
    if name in ("login", "logout", "check_login"):
        from . import account as m
        return getattr(m, name)
    if name == "RegistryConfig":
        from .config import RegistryConfig
        return RegistryConfig
    if name == "parse":
        from .reference import parse
        return parse
    raise AttributeError(name)
