"""What a repository holds, as the muse client names it (`/refs` answers one of these)."""

DOMAINS = ("code", "midi", "scaffold")
