"""The muse client side: the wire protocol client, push, clone and the ``.muse`` layout.

``wire`` talks HTTP, ``push`` and ``clone`` run the protocol's sequences, ``download`` fetches a
pack by URL (resumable, ranged), ``pipe`` hands it to ``unpack`` as it arrives, ``unpack`` checks
every id and hands files to ``writer``'s threads, ``layout`` is the on-disk ``.muse``. The
``musehub clone`` command that drives it is in ``musehub/cli/clone.py``. This package imports
nothing else of the hub but the mpack reader and ids.
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
