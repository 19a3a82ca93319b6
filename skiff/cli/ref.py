"""Image reference normalisation as the docker CLI does it (distribution/reference)."""

DEFAULT_DOMAIN = "docker.io"


def split_domain(name):
    i = name.find("/")
    if i < 0:
        return DEFAULT_DOMAIN, "library/" + name
    first = name[:i]
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, name[i + 1:]
    return DEFAULT_DOMAIN, name


def parse(ref):
    """→ (fully-qualified repository, tag or "", digest or "")."""
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
    domain, path = split_domain(ref)
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    return f"{domain}/{path}", tag, digest


def familiar(repo):
    if repo.startswith(DEFAULT_DOMAIN + "/"):
        repo = repo[len(DEFAULT_DOMAIN) + 1:]
        if repo.startswith("library/") and repo.count("/") == 1:
            repo = repo[len("library/"):]
    return repo


def familiar_tagged(ref):
    """'busybox' → 'busybox:latest' (what docker prints in messages)."""
    repo, tag, digest = parse(ref)
    s = familiar(repo)
    if digest:
        return s + "@" + digest
    return f"{s}:{tag or 'latest'}"
