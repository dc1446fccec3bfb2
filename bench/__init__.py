"""MuseHub benchmark scripts (not tests): `python -m bench --help`."""
