"""skiff-runtime: an OCI runtime with runc's command line.

Import cost matters here (one interpreter start per create/start/delete), so
this package's modules import only what they use, lazily where possible.
"""
