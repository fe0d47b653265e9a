"""The controller machinery, as controller-runtime has it: a cache that watches fill, a
work queue of keys with per-key serialisation and back-off, and a fixed pool of workers.
Nothing here knows what a placement is."""
