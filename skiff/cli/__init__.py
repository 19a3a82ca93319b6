"""The ``skiff`` command line: docker's verbs and flags, a pure client of the
Docker Engine API (see skiff.cli.main for host selection and auto-start)."""
