"""skiff's engine: containers with a life cycle, state, events, logs, exec."""


def __getattr__(name):
    if name == "Engine":
        from skiff.engine.engine import Engine
        return Engine
    raise AttributeError(name)
