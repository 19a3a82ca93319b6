"""Image verbs: images, pull, push, tag, rmi, save, load, import, history, build."""

import json
import os
import sys

from skiff.cli import fmt
from skiff.cli import ref as R
from skiff.cli.client import APIError, auth_header
from skiff.cli.commands.container import _confirm, filters_json, write_stream_out
from skiff.cli.flags import F
from skiff.cli.main import Command


def _auth_for(repo):
    from skiff.cli.commands.system import load_auth
    domain = repo.split("/", 1)[0]
    return auth_header(load_auth(domain))


def pull_image(cli, repo, tag, digest, platform=None, out=None, quiet=False, all_tags=False):
    """POST /images/create and draw the progress stream (raises JSONMessageError)."""
    from skiff.cli.streams import display_messages
    out = out or sys.stdout
    params = {"fromImage": repo}
    if digest:
        params["tag"] = digest
    elif not all_tags:
        params["tag"] = tag or "latest"
    if platform:
        params["platform"] = platform
    r = cli.client.request("POST", "/images/create", params,
                           headers={"X-Registry-Auth": _auth_for(repo)})
    if quiet:
        from skiff.cli.streams import JSONMessageError
        for m in r.iter_json():
            if m.get("error") or m.get("errorDetail"):
                raise JSONMessageError((m.get("errorDetail") or {}).get("message") or m["error"])
        return
    display_messages(r.iter_json(), out)


def cmd_pull(cli, args, name="pull"):
    from skiff.cli.streams import JSONMessageError
    cmd = Command(cli, name, "[OPTIONS] NAME[:TAG|@DIGEST]",
                  [F("a,all-tags"), F("disable-content-trust", "bool", True),
                   F("platform", "str", ""), F("q,quiet")], args, exact=1)
    o = cmd.opts
    image = cmd.args[0]
    repo, tag, digest = R.parse(image)
    if o.all_tags and (tag or digest):
        sys.stderr.write("tag can't be used with --all-tags/-a\n")
        return 1
    if not tag and not digest and not o.all_tags:
        print("Using default tag: latest")
        tag = "latest"
    try:
        pull_image(cli, repo, tag, digest, o.platform, quiet=o.quiet, all_tags=o.all_tags)
    except JSONMessageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    # docker prints the canonical reference last
    fam = R.familiar(repo)
    full = repo if repo.split("/", 1)[0] != "docker.io" else "docker.io/" + (
        "library/" + fam if "/" not in fam else fam)
    print(f"{full}{'@' + digest if digest else ':' + tag if tag else ''}")
    return 0


def cmd_push(cli, args, name="push"):
    from skiff.cli.streams import JSONMessageError, display_messages
    cmd = Command(cli, name, "[OPTIONS] NAME[:TAG]",
                  [F("a,all-tags"), F("disable-content-trust", "bool", True),
                   F("platform", "str", ""), F("q,quiet")], args, exact=1)
    repo, tag, _ = R.parse(cmd.args[0])
    if not tag and not cmd.opts.all_tags:
        print("Using default tag: latest")
        tag = "latest"
    params = {}
    if tag:
        params["tag"] = tag
    r = cli.client.request("POST", f"/images/{repo}/push", params,
                           headers={"X-Registry-Auth": _auth_for(repo)})
    try:
        if cmd.opts.quiet:
            for m in r.iter_json():
                if m.get("error"):
                    raise JSONMessageError(m["error"])
            print(cmd.args[0])
        else:
            display_messages(r.iter_json(), sys.stdout)
    except JSONMessageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    return 0


IMAGES_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_TABLE_DIGESTS = ("table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t"
                        "{{.CreatedSince}}\t{{.Size}}")


def image_rows(imgs, trunc=True, digests=False, now=None, want=None):
    """One row per repo:tag (docker's imageFormat), dangling as <none>."""
    rows = []
    for img in imgs:
        tags = img.get("RepoTags") or []
        dig = img.get("RepoDigests") or []
        repo_digests = {}
        for d in dig:
            r, _, h = d.rpartition("@")
            repo_digests.setdefault(r, []).append(h)
        done = False
        for t in tags:
            if t == "<none>:<none>":
                continue
            r, _, tag = t.rpartition(":")
            if want and R.familiar(R.parse(want)[0]) != r:
                continue
            ds = (repo_digests.get(r) if digests else None) or ["<none>"]
            rows.append(fmt.ImageCtx(img, r, tag, ds[0], trunc, now))
            done = True
        if not done and not tags or (not done and all(t == "<none>:<none>" for t in tags)):
            if want:
                continue
            if dig:
                for d in dig:
                    r, _, h = d.rpartition("@")
                    rows.append(fmt.ImageCtx(img, r, "<none>", h, trunc, now))
            else:
                rows.append(fmt.ImageCtx(img, "<none>", "<none>", "<none>", trunc, now))
    return rows


def cmd_images(cli, args, name="images"):
    import time
    cmd = Command(cli, name, "[OPTIONS] [REPOSITORY[:TAG]]",
                  [F("a,all"), F("digests"), F("f,filter", "list"), F("format", "str", ""),
                   F("no-trunc"), F("q,quiet"), F("tree")], args, max_args=1)
    o = cmd.opts
    params = {}
    if o.all:
        params["all"] = 1
    flt = list(o.filter or [])
    if cmd.args:
        flt.append(f"reference={cmd.args[0]}")
    f = filters_json(flt)
    if f:
        params["filters"] = f
    imgs = cli.client.get("/images/json", params) or []
    imgs.sort(key=lambda i: -(i.get("Created") or 0))
    show_digest = o.digests or ".Digest" in (o.format or "")
    rows = image_rows(imgs, not o.no_trunc, show_digest, time.time())
    rows.sort(key=lambda r: (r.Repository == "<none>", r.Repository, -(r.i.get("Created") or 0)))
    if o.quiet:
        for r in rows:
            print(r.ID)
        return 0
    table = IMAGES_TABLE_DIGESTS if o.digests else IMAGES_TABLE
    fmt.write_formatted(o.format, rows, fmt.header_ctx(fmt.ImageCtx.HEADERS), table)
    return 0


def cmd_tag(cli, args, name="tag"):
    cmd = Command(cli, name, "SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]", [], args, exact=2)
    repo, tag, _ = R.parse(cmd.args[1])
    cli.client.request("POST", f"/images/{cmd.args[0]}/tag",
                       {"repo": repo, "tag": tag or "latest"}).read()
    return 0


def cmd_rmi(cli, args, name="rmi"):
    cmd = Command(cli, name, "[OPTIONS] IMAGE [IMAGE...]",
                  [F("f,force"), F("no-prune"), F("platform", "list")], args, min_args=1)
    o = cmd.opts
    params = {}
    if o.force:
        params["force"] = 1
    if o.no_prune:
        params["noprune"] = 1
    errs = []
    for img in cmd.args:
        try:
            res = cli.client.request("DELETE", f"/images/{img}", params).json() or []
        except APIError as e:
            errs.append(str(e))
            continue
        for d in res:
            if d.get("Untagged"):
                print(f"Untagged: {d['Untagged']}")
            if d.get("Deleted"):
                print(f"Deleted: {d['Deleted']}")
    for e in errs:
        sys.stderr.write(e + "\n")
    return 1 if errs else 0


def cmd_save(cli, args, name="save"):
    cmd = Command(cli, name, "[OPTIONS] IMAGE [IMAGE...]",
                  [F("o,output", "str", ""), F("platform", "list")], args, min_args=1)
    if not cmd.opts.output and sys.stdout.isatty():
        sys.stderr.write("cowardly refusing to save to a terminal. Use the -o flag or redirect\n")
        return 1
    r = cli.client.request("GET", "/images/get", {"names": cmd.args})
    return write_stream_out(r, cmd.opts.output)


def _file_chunks(f):
    while True:
        b = f.read(1 << 20)
        if not b:
            return
        yield b


def cmd_load(cli, args, name="load"):
    from skiff.cli.streams import JSONMessageError, display_messages
    cmd = Command(cli, name, "[OPTIONS]",
                  [F("i,input", "str", ""), F("q,quiet"), F("platform", "list")], args, max_args=0)
    o = cmd.opts
    if not o.input and sys.stdin.isatty():
        sys.stderr.write("requested load from stdin, but stdin is empty\n")
        return 1
    f = open(o.input, "rb") if o.input else sys.stdin.buffer
    try:
        params = {"quiet": 1} if o.quiet else {}
        r = cli.client.request("POST", "/images/load", params, _file_chunks(f),
                               headers={"Content-Type": "application/x-tar"})
        ctype = r.headers.get("content-type", "")
        if "json" in ctype:
            try:
                display_messages(r.iter_json(), sys.stdout)
            except JSONMessageError as e:
                sys.stderr.write(f"{e}\n")
                return 1
        else:
            sys.stdout.buffer.write(r.read())
    finally:
        if o.input:
            f.close()
    return 0


def cmd_import(cli, args, name="import"):
    cmd = Command(cli, name, "[OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
                  [F("c,change", "list"), F("m,message", "str", ""), F("platform", "str", "")],
                  args, min_args=1)
    o = cmd.opts
    src = cmd.args[0]
    params = {"fromSrc": "-" if not src.startswith(("http://", "https://")) else src}
    if len(cmd.args) == 2:
        params["repo"] = cmd.args[1]  # docker sends the reference as given
    if o.message:
        params["message"] = o.message
    if o.change:
        params["changes"] = o.change
    if o.platform:
        params["platform"] = o.platform
    body = None
    f = None
    if params["fromSrc"] == "-":
        f = sys.stdin.buffer if src == "-" else open(src, "rb")
        body = _file_chunks(f)
    try:
        r = cli.client.request("POST", "/images/create", params, body,
                               headers={"Content-Type": "application/x-tar"})
        for m in r.iter_json():
            if m.get("error"):
                sys.stderr.write(m["error"] + "\n")
                return 1
            if m.get("status"):
                print(m["status"])
            elif m.get("stream"):
                sys.stdout.write(m["stream"])
    finally:
        if f is not None and src != "-":
            f.close()
    return 0


HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
                   "CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}


def cmd_history(cli, args, name="history"):
    import time
    cmd = Command(cli, name, "[OPTIONS] IMAGE",
                  [F("format", "str", ""), F("H,human", "bool", True), F("no-trunc"),
                   F("q,quiet"), F("platform", "str", "")], args, exact=1)
    o = cmd.opts
    hist = cli.client.get(f"/images/{cmd.args[0]}/history") or []
    now = time.time()
    rows = []
    for h in hist:
        hid = h.get("Id", "")
        if hid == "<missing>":
            sid = hid
        else:
            sid = hid if o.no_trunc else fmt.truncate_id(hid)
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        if not o.no_trunc:
            created_by = fmt.ellipsis(created_by, 45)
        size = h.get("Size", 0)
        rows.append(fmt.MapCtx({
            "ID": sid,
            "CreatedSince": fmt.since(h.get("Created"), now) if o.human else fmt.local_time(h.get("Created", 0)),
            "CreatedAt": fmt.local_time(h.get("Created", 0)),
            "CreatedBy": created_by,
            "Size": fmt.human_size(size, 3) if o.human else str(size),
            "Comment": h.get("Comment", ""),
        }, HISTORY_HEADERS))
    fmt_ = "{{.ID}}" if o.quiet else o.format
    fmt.write_formatted(fmt_, rows, fmt.header_ctx(HISTORY_HEADERS), HISTORY_TABLE)
    return 0


def cmd_image_inspect(cli, args, name="image inspect"):
    from skiff.cli.commands.system import inspect_objects
    cmd = Command(cli, name, "[OPTIONS] IMAGE [IMAGE...]",
                  [F("f,format", "str", ""), F("platform", "str", "")], args, min_args=1)
    return inspect_objects(cli, cmd.args, cmd.opts.format, kinds=("image",))


def cmd_image_prune(cli, args, name="image prune"):
    cmd = Command(cli, name, "[OPTIONS]", [F("a,all"), F("f,force"), F("filter", "list")],
                  args, max_args=0)
    o = cmd.opts
    warn = ("WARNING! This will remove all images without at least one container associated to them."
            if o.all else "WARNING! This will remove all dangling images.")
    if not o.force and not _confirm(warn):
        return 0
    flt = list(o.filter or [])
    flt.append("dangling=" + ("false" if o.all else "true"))
    r = cli.client.post("/images/prune", {"filters": filters_json(flt)}) or {}
    deleted = r.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for d in deleted:
            for k in ("Untagged", "Deleted"):
                if d.get(k):
                    print(f"{k.lower()}: {d[k]}")
        print()
    print(f"Total reclaimed space: {fmt.human_size(r.get('SpaceReclaimed', 0))}")
    return 0


def cmd_build(cli, args, name="build"):
    """Classic builder: tar the context, POST /build, show the stream."""
    import io
    import tarfile
    from skiff.cli.streams import JSONMessageError, display_messages
    cmd = Command(cli, name, "[OPTIONS] PATH | URL | -",
                  [F("build-arg", "list"), F("f,file", "str", ""), F("label", "list"),
                   F("no-cache"), F("pull"), F("q,quiet"), F("rm", "bool", True),
                   F("force-rm"), F("t,tag", "list"), F("target", "str", ""),
                   F("network", "str", ""), F("platform", "str", ""), F("iidfile", "str", "")],
                  args, exact=1)
    o = cmd.opts
    ctx = cmd.args[0]
    buf = io.BytesIO()
    dockerfile = o.file or "Dockerfile"
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ignore = set()
        di = os.path.join(ctx, ".dockerignore")
        if os.path.exists(di):
            with open(di) as f:
                ignore = {ln.strip().rstrip("/") for ln in f if ln.strip() and not ln.startswith("#")}
        for entry in sorted(os.listdir(ctx)):
            if entry in ignore:
                continue
            tf.add(os.path.join(ctx, entry), arcname=entry)
        if o.file and not os.path.abspath(o.file).startswith(os.path.abspath(ctx) + os.sep):
            tf.add(o.file, arcname=".dockerfile.skiff")
            dockerfile = ".dockerfile.skiff"
        elif o.file:
            dockerfile = os.path.relpath(os.path.abspath(o.file), os.path.abspath(ctx))
    params = {"t": o.tag or None, "dockerfile": dockerfile, "version": "1"}
    if o.build_arg:
        params["buildargs"] = json.dumps(dict(
            (a.partition("=")[0], a.partition("=")[2] if "=" in a else os.environ.get(a, ""))
            for a in o.build_arg))
    if o.label:
        params["labels"] = json.dumps(dict(a.partition("=")[::2] for a in o.label))
    if o.no_cache:
        params["nocache"] = 1
    if o.pull:
        params["pull"] = 1
    if o.quiet:
        params["q"] = 1
    if not o.rm:
        params["rm"] = 0
    if o.force_rm:
        params["forcerm"] = 1
    if o.target:
        params["target"] = o.target
    if o.network:
        params["networkmode"] = o.network
    if o.platform:
        params["platform"] = o.platform
    r = cli.client.request("POST", "/build", params, buf.getvalue(),
                           headers={"Content-Type": "application/x-tar",
                                    "X-Registry-Config": auth_header({})})
    image_id = []
    try:
        display_messages(r.iter_json(), sys.stdout if not o.quiet else open(os.devnull, "w"),
                         aux=lambda a: image_id.append(a.get("ID")))
    except JSONMessageError as e:
        sys.stderr.write(f"{e}\n")
        return 1
    if o.quiet and image_id:
        print(image_id[-1])
    if o.iidfile and image_id:
        with open(o.iidfile, "w") as f:
            f.write(image_id[-1])
    return 0
