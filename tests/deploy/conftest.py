"""The deploy tests run the compose services' commands against the suite's real parts: the
test PostgreSQL, the Temporal dev server and the moto S3 endpoint."""

from tests.storage.s3_server import moto_s3

__all__ = ["moto_s3"]  # re-exported so pytest finds the session fixture here
