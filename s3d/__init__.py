"""s3d: turn 2D films and photos into stereoscopic 3D.

Data flow: ``io`` (decode) -> ``depth`` -> ``stereo`` (disparity, warp, fill) -> ``layout`` -> ``io`` (encode).
"""

__version__ = "0.1.0"
