"""The GC tests use the session's database, local storage and Temporal (tests/conftest.py), and
for the S3 variant the moto S3 endpoint of the storage tests."""

from tests.storage.s3_server import moto_s3

__all__ = ["moto_s3"]  # re-exported so pytest finds the session fixture here
