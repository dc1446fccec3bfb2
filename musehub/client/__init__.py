"""The muse client side: the wire protocol client, push, clone and the ``.muse`` layout.

``wire`` talks HTTP, ``push`` and ``clone`` run the protocol's sequences, ``layout`` and
``unpack`` write the on-disk repository, ``download`` fetches and checks a pack by URL. The
``musehub clone`` command that drives it is in ``musehub/cli/clone.py``. This package imports
nothing else of the hub but the mpack codec.
"""

from musehub.client.clone import CloneResult, clone
from musehub.client.errors import CloneError, DownloadError, PushRejected, RemoteError
from musehub.client.push import push_repository
from musehub.client.wire import MuseRemote

__all__ = [
    "CloneError",
    "CloneResult",
    "DownloadError",
    "MuseRemote",
    "PushRejected",
    "RemoteError",
    "clone",
    "push_repository",
]
