"""fastcurate (embed branch: minimal package init; the lead's __init__ supersedes this file)."""

from .errors import *  # noqa: F401,F403
from .embed import (  # noqa: F401
    ClipEncoder,
    ClipTokenizer,
    TextEncoder,
    clip_score,
    embed_shards,
    export_clip,
    export_text_model,
    load_bundle,
    make_text_bundle,
)
