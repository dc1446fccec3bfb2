"""What a branch name and a manifest path may be: the hub refuses the rest at push, and a client
can skip the rest at checkout, with the same rules (this module imports nothing of the hub's).

A manifest path becomes a file in someone's working tree, and a branch name a file under
`.muse/refs/heads/`, so each must be one safe relative path on every common filesystem: no way
out of the tree (absolute, `..`, a drive letter, `\\` on Windows), no way into the repository's
own data (a `.muse` segment, in any case: macOS and Windows fold it), nothing a terminal or an
editor shows differently from what it is (control characters, bidi overrides like U+202E,
zero-width characters like U+200B), and nothing a filesystem refuses or rewrites.
"""

from __future__ import annotations

import unicodedata

MUSE_DIR = ".muse"
MAX_PATH_BYTES = 4096
MAX_SEGMENT_BYTES = 255  # most filesystems' limit for one name
MAX_BRANCH_LENGTH = 255

# Cc: controls (NUL, newline, DEL, C1); Cf: format characters (bidi controls, zero-width
# space and joiners, the BOM); Zl/Zp: line and paragraph separators; Cs: lone surrogates.
_UNSEEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Git's ref-name specials, which the muse client refuses too.
_BRANCH_SPECIALS = frozenset("\\~^:?*[")


def manifest_path_problem(path: str) -> str | None:
    """Why `path` may not name a file in a snapshot ("must ..."), or None when it is safe."""
    if not path:
        return "must not be empty"
    if "\x00" in path:
        return "must not contain NUL"
    unseen = _first_unseen(path)
    if unseen is not None:
        return f"must not contain the control or invisible character {unseen}"
    if "\\" in path:
        return "must not contain a backslash (the separator is '/'; Windows splits at both)"
    if path.startswith("/"):
        return "must be relative (no leading '/')"
    if len(path) >= 2 and path[1] == ":" and path[0].isascii() and path[0].isalpha():
        return "must not start with a drive letter"
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        return f"must be at most {MAX_PATH_BYTES} bytes long"
    for segment in path.split("/"):
        problem = _segment_problem(segment)
        if problem is not None:
            return problem
    return None


def _segment_problem(segment: str) -> str | None:
    if segment == "":
        return "must not contain an empty segment ('//' or a trailing '/')"
    if segment in (".", ".."):
        return f"must not contain a '{segment}' segment"
    if segment.casefold() == MUSE_DIR:
        return f"must not contain a '{MUSE_DIR}' segment (the repository's own data)"
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        return f"must not contain a segment over {MAX_SEGMENT_BYTES} bytes"
    return None


def branch_name_problem(name: str) -> str | None:
    """Why `name` may not be a branch ("must ..."), or None. Git's ref-name rules as the muse
    client applies them (it refuses such a branch in a clone), and no unseen characters."""
    if not 1 <= len(name) <= MAX_BRANCH_LENGTH:
        return f"must be 1-{MAX_BRANCH_LENGTH} characters long"
    unseen = _first_unseen(name)
    if unseen is not None:
        return f"must not contain the control or invisible character {unseen}"
    for char in name:
        if char in _BRANCH_SPECIALS or unicodedata.category(char) == "Zs":
            return f"must not contain spaces or any of \\ ~ ^ : ? * [ (it has {char!r})"
    if ".." in name:
        return "must not contain '..'"
    if name.endswith("."):
        return "must not end with '.'"
    for part in name.split("/"):
        if not part:
            return "must not start or end with '/' or contain '//'"
        if part.startswith("."):
            return "must not have a part that starts with '.'"
        if part.endswith(".lock"):
            return "must not have a part that ends with '.lock'"
    return None


def _first_unseen(text: str) -> str | None:
    """The first control or invisible character in `text`, as U+XXXX, or None."""
    for char in text:
        if unicodedata.category(char) in _UNSEEN:
            return f"U+{ord(char):04X}"
    return None
