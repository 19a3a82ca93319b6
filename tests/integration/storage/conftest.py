from tests.integration.image.conftest import (busybox, busybox_archive, images,  # noqa: F401
                                              mounted)
