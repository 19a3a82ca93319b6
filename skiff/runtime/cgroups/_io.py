"""Small file helpers for cgroup control files (errors name file and value)."""

import os


def write(directory: str, name: str, value) -> None:
    path = os.path.join(directory, name)
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as e:
        raise OSError(e.errno, f"failed to write {value!s:.60} to {path}: {e.strerror}",
                      path) from None
    try:
        os.write(fd, data)
    except OSError as e:
        raise OSError(e.errno, f"failed to write {value!s:.60} to {path}: {e.strerror}",
                      path) from None
    finally:
        os.close(fd)


def read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read()


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def read_int(directory: str, name: str, default=None):
    try:
        s = read(directory, name).strip()
    except OSError:
        return default
    if s == "max":
        return None
    try:
        return int(s)
    except ValueError:
        return default


def read_kv(directory: str, name: str) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat) → dict."""
    out = {}
    try:
        text = read(directory, name)
    except OSError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out
