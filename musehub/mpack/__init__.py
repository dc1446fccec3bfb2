"""The muse pack ("mpack"): content ids, record validation and the streaming pack codec.

`ids` computes the content ids the muse client computes, `records` checks what a client sends,
`codec` writes and reads pack bundles (see its docstring for the byte layout), `chain` joins
packs by byte range, `encoding` writes a pack's zstd copy.
"""
