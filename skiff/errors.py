"""Typed errors, errdefs-style.

Every layer raises one of these; the API layer maps the class to the HTTP
status Docker uses for the same mistake, and the message is sent as-is as
``{"message": ...}``. Messages follow Docker's wording because clients
(docker-py in particular) choose their exception class from the text.
"""


class SkiffError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status = 500

    def __init__(self, message: str = ""):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SkiffError):
    status = 400


class Unauthorized(SkiffError):
    status = 401


class PermissionDenied(SkiffError):
    status = 403


class NotFound(SkiffError):
    status = 404


class Conflict(SkiffError):
    status = 409


class NotModified(SkiffError):
    status = 304


class NotImplementedYet(SkiffError):
    status = 501


class Unavailable(SkiffError):
    status = 503


class Internal(SkiffError):
    status = 500


class DigestMismatch(InvalidArgument):
    """Content did not hash to the digest it was announced with."""


class ContainerNotFound(NotFound):
    def __init__(self, ref: str):
        super().__init__(f"No such container: {ref}")


class ImageNotFound(NotFound):
    def __init__(self, ref: str):
        super().__init__(f"No such image: {ref}")
