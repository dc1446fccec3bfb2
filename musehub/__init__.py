"""MuseHub: the muse wire protocol with prebuilt fetch mpacks."""
