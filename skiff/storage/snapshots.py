"""Snapshots and container layers on overlayfs.

Layout under ``root`` (``<data-root>/storage``)::

    snapshots/<chain-id hex>/fs         one unpacked layer, shared by every
    snapshots/<chain-id hex>/meta.json  image that has this chain
    l/<short id> -> ../snapshots/<hex>/fs   short names for mount options
    tmp/                                layers being applied (renamed into
                                        snapshots/ only when complete)
    containers/<id>/upper, work, merged, meta.json
    empty/                              the lower dir of a zero-layer image

A chain ID is Docker's: chain(L0) = diff_id(L0), chain(Ln) =
sha256(chain(Ln-1) + " " + diff_id(Ln)). The lower layers of a container are
never written: overlayfs copies up into the container's ``upper``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
import time

from skiff import errors
from skiff import sys as ksys
from skiff.image.archive.apply import ApplyResult, apply_layer
from skiff.image.content import validate_digest


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def disk_usage(path: str) -> int:
    """Allocated bytes of a tree, each inode counted once (like du)."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def tree_size(path: str) -> int:
    """Apparent size (sum of st_size of files and symlinks, inodes once)."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                total += st.st_size
    return total


def _is_mounted(path: str) -> bool:
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                mp = line.split()[4].encode().decode("unicode_escape")
                if mp == path:
                    return True
    except OSError:
        pass
    return False


class SnapshotStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.snapdir = os.path.join(self.root, "snapshots")
        self.linkdir = os.path.join(self.root, "l")
        self.tmpdir = os.path.join(self.root, "tmp")
        self.ctrdir = os.path.join(self.root, "containers")
        self.emptydir = os.path.join(self.root, "empty")
        for d in (self.snapdir, self.linkdir, self.tmpdir, self.ctrdir, self.emptydir):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.root, 0o711)
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        # leftovers of an apply that crashed: never a half-made snapshot
        for name in os.listdir(self.tmpdir):
            if name.startswith("apply-") or name.startswith("del-"):
                p = os.path.join(self.tmpdir, name)
                try:
                    pid = int(name.split("-")[1])
                    if os.path.exists(f"/proc/{pid}"):  # still working (maybe us)
                        continue
                except (ValueError, IndexError):
                    pass
                shutil.rmtree(p, ignore_errors=True)

    # --- snapshots -------------------------------------------------------
    def _dir(self, chain_id: str) -> str:
        return os.path.join(self.snapdir, validate_digest(chain_id)[7:])

    def has(self, chain_id: str) -> bool:
        return os.path.isfile(os.path.join(self._dir(chain_id), "meta.json"))

    def path(self, chain_id: str) -> str:
        """The unpacked directory of a committed snapshot."""
        return os.path.join(self._dir(chain_id), "fs")

    def meta(self, chain_id: str) -> dict:
        try:
            with open(os.path.join(self._dir(chain_id), "meta.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise errors.NotFound(f"snapshot {chain_id}: not found") from None

    def list(self) -> list[str]:
        return ["sha256:" + n for n in os.listdir(self.snapdir)
                if len(n) == 64 and os.path.isfile(os.path.join(self.snapdir, n, "meta.json"))]

    def apply(self, parent_chain: str | None, fileobj, *, diff_id: str | None = None,
              digest: str | None = None, **limits) -> tuple[str, ApplyResult]:
        """Apply a layer on top of ``parent_chain``; returns (chain ID, result).

        The layer is unpacked into tmp/ and renamed into snapshots/ only when
        every entry is written and the digests match; on error nothing is
        left behind. If the chain already exists the new copy is dropped."""
        if parent_chain is not None and not self.has(parent_chain):
            raise errors.NotFound(f"parent snapshot {parent_chain}: not found")
        work = os.path.join(self.tmpdir, f"apply-{os.getpid()}-{secrets.token_hex(8)}")
        os.mkdir(work, 0o700)
        try:
            fs = os.path.join(work, "fs")
            os.mkdir(fs, 0o755)
            result = apply_layer(fileobj, fs, expected_digest=digest,
                                 expected_diff_id=diff_id, **limits)
            chain = result.diff_id if parent_chain is None else chain_ids(
                [parent_chain, result.diff_id])[1]
            final = self._dir(chain)
            if self.has(chain):
                return chain, result
            _write_json(os.path.join(work, "meta.json"), {
                "chain_id": chain, "parent": parent_chain, "diff_id": result.diff_id,
                "size": result.content_size, "created": time.time(), "blob": result.digest,
                "link": self._make_link(chain)})
            if os.path.exists(final):  # stale, incomplete (no meta.json)
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(work, final)
            except OSError:
                if self.has(chain):  # another apply of the same chain won the race
                    return chain, result
                raise
            work = None
            return chain, result
        finally:
            if work:
                shutil.rmtree(work, ignore_errors=True)

    def _make_link(self, chain: str) -> str:
        short = chain[7:33]
        link = os.path.join(self.linkdir, short)
        target = os.path.join("..", "snapshots", chain[7:], "fs")
        try:
            os.symlink(target, link)
        except FileExistsError:
            pass
        return short

    def remove(self, chain_id: str) -> None:
        d = self._dir(chain_id)
        if not os.path.exists(d):
            return
        for cid in os.listdir(self.ctrdir):
            m = self._ctr_meta(cid, missing_ok=True)
            if m and chain_id in m.get("chain", []):
                raise errors.Conflict(f"snapshot {chain_id} is in use by container {cid}")
        try:
            os.unlink(os.path.join(self.linkdir, chain_id[7:33]))
        except FileNotFoundError:
            pass
        trash = os.path.join(self.tmpdir, f"del-{os.getpid()}-{secrets.token_hex(8)}")
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def lower_dirs(self, chain: list[str]) -> list[str]:
        """Lower directories for overlayfs, top layer first."""
        if not chain:
            return [self.emptydir]
        out = []
        for c in reversed(chain):
            if not self.has(c):
                raise errors.NotFound(f"snapshot {c}: not found")
            out.append(os.path.join(self.linkdir, c[7:33]))
        return out

    def usage(self, chain_id: str) -> int:
        return disk_usage(self.path(chain_id))

    # --- containers --------------------------------------------------------
    def _ctr(self, cid: str) -> str:
        if not cid or "/" in cid or cid in (".", "..") or len(cid) > 128:
            raise errors.InvalidArgument(f"invalid container id {cid!r}")
        return os.path.join(self.ctrdir, cid)

    def _ctr_meta(self, cid: str, missing_ok: bool = False) -> dict | None:
        try:
            with open(os.path.join(self._ctr(cid), "meta.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise errors.NotFound(f"no storage for container {cid}") from None

    def container_ids(self) -> list[str]:
        return [c for c in os.listdir(self.ctrdir)
                if os.path.isfile(os.path.join(self.ctrdir, c, "meta.json"))]

    def prepare(self, cid: str, chain: list[str], image_id: str | None = None) -> dict:
        d = self._ctr(cid)
        if os.path.exists(os.path.join(d, "meta.json")):
            raise errors.Conflict(f"storage for container {cid} already exists")
        self.lower_dirs(chain)  # all present
        os.makedirs(d, exist_ok=True)
        for sub in ("upper", "work", "merged"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, "upper"), 0o755)
        meta = {"id": cid, "image": image_id, "chain": list(chain), "created": time.time()}
        _write_json(os.path.join(d, "meta.json"), meta)
        return meta

    def container_meta(self, cid: str) -> dict:
        return self._ctr_meta(cid)

    def upper_dir(self, cid: str) -> str:
        self._ctr_meta(cid)
        return os.path.join(self._ctr(cid), "upper")

    def mount_options(self, cid: str) -> str:
        meta = self._ctr_meta(cid)
        d = self._ctr(cid)
        lower = ":".join(self.lower_dirs(meta["chain"]))
        return (f"lowerdir={lower},upperdir={os.path.join(d, 'upper')},"
                f"workdir={os.path.join(d, 'work')}")

    def mount(self, cid: str, target: str | None = None) -> str:
        """Mount the container's root filesystem (overlayfs) at ``target``
        (default: containers/<id>/merged); returns the mount point."""
        opts = self.mount_options(cid)
        target = os.path.abspath(target or os.path.join(self._ctr(cid), "merged"))
        os.makedirs(target, exist_ok=True)
        if len(opts) < 4000:
            ksys.mount("overlay", target, "overlay", 0, opts)
            return target
        # Mount options are limited to one page: use paths relative to the
        # storage root (l/<26 chars> per layer, as Docker's overlay2 does),
        # resolved against the cwd of a short-lived mount(8) process (the
        # daemon's own cwd is never changed).
        meta = self._ctr_meta(cid)
        lower = ":".join(os.path.join("l", c[7:33]) for c in reversed(meta["chain"]))
        rel = os.path.relpath(self._ctr(cid), self.root)
        ropts = f"lowerdir={lower},upperdir={rel}/upper,workdir={rel}/work"
        if len(ropts) >= 4000:
            raise errors.InvalidArgument(
                f"max depth exceeded: image has {len(meta['chain'])} layers")
        r = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", ropts, target],
                           cwd=self.root, capture_output=True, text=True)
        if r.returncode != 0:
            raise errors.Internal(f"overlay mount of {cid} failed: {r.stderr.strip()}")
        return target

    def unmount(self, cid: str, target: str | None = None) -> None:
        target = target or os.path.join(self._ctr(cid), "merged")
        while _is_mounted(target):
            try:
                ksys.umount(target, 0)
            except OSError as e:
                if e.errno == 16:  # EBUSY: leave it to the kernel
                    ksys.umount(target, ksys.MNT_DETACH)
                else:
                    raise

    def _mounts_of(self, cid: str) -> list[str]:
        """Mount points of overlay mounts that use this container's upper
        dir (wherever the engine mounted it)."""
        d = self._ctr(cid)
        keys = (f"upperdir={d}/upper,", f"upperdir={os.path.relpath(d, self.root)}/upper,")
        out = []
        try:
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    if " - overlay " not in line:
                        continue
                    opts = fields[-1] + ","
                    if any(k in opts for k in keys):
                        out.append(fields[4].encode().decode("unicode_escape"))
        except OSError:
            pass
        return out

    def remove_container(self, cid: str) -> None:
        d = self._ctr(cid)
        if not os.path.exists(d):
            return
        self.unmount(cid)
        for mp in self._mounts_of(cid):
            # still mounted somewhere (the engine's bundle rootfs): detach it,
            # the layer is going away
            try:
                ksys.umount(mp, ksys.MNT_DETACH)
            except OSError:
                pass
        merged = os.path.join(d, "merged")
        if os.path.ismount(merged):
            raise errors.Conflict(f"container {cid}: root filesystem is still mounted")
        trash = os.path.join(self.tmpdir, f"del-{os.getpid()}-{secrets.token_hex(8)}")
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def container_size(self, cid: str) -> int:
        """SizeRw: bytes written in the container's layer."""
        return tree_size(self.upper_dir(cid))

    def changes(self, cid: str) -> list[dict]:
        """``docker diff``: [{"Path", "Kind"}] with Kind 0 modified, 1 added,
        2 deleted, from the upper dir against the lower layers."""
        meta = self._ctr_meta(cid)
        upper = os.path.join(self._ctr(cid), "upper")
        lowers = self.lower_dirs(meta["chain"])

        def in_lower(rel: str) -> bool:
            for low in lowers:
                p = os.path.join(os.path.realpath(low), rel)
                if os.path.lexists(p):
                    st = os.lstat(p)
                    return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
            return False

        out = []
        for dirpath, dirnames, filenames in os.walk(upper):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, upper)
            for name in sorted(dirnames + filenames):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                    out.append({"Path": "/" + rel, "Kind": 2})
                elif in_lower(rel):
                    out.append({"Path": "/" + rel, "Kind": 0})
                else:
                    out.append({"Path": "/" + rel, "Kind": 1})
        out.sort(key=lambda c: c["Path"])
        return out
