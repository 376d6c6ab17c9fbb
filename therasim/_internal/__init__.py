"""therasim internals: no stability promise. Import from the public modules instead."""
