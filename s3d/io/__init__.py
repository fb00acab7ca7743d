"""Decoding and encoding: videos with PyAV, photos with Pillow, every output written atomically."""
