"""The muse client side: the wire protocol client, push, clone, pull and the ``.muse`` layout.

``wire`` talks HTTP through ``session`` (``http11``, a lean HTTP/1.1 client for http://, or
httpx for https://, other proxies and a transport given by tests),
``push``, ``clone`` and ``pull`` run the protocol's sequences, ``parts`` downloads an answer's
packs (a chain's base and top-ups, a few at once) and ``download`` each one by URL (resumable,
ranged), ``pipe`` hands them to ``unpack`` as they arrive, ``unpack`` checks every id and hands
files to ``writer``'s threads, ``layout`` is the on-disk ``.muse`` and ``worktree`` moves a
working tree between two commits' trees. The ``musehub clone`` and ``musehub pull`` commands
that drive it are in ``musehub/cli/``; ``early`` sends a clone's first request
(``clone_request``, built by ``http11_request``) before the rest is loaded, which is why this
package's ``__init__`` imports nothing. This package imports nothing else of the hub but the
mpack reader and ids.
"""
