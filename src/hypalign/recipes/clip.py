"""The CLIP baseline recipe (``hypalign train clip``): MERU's recipe (:mod:`hypalign.recipes.meru`) with kind ``clip``
— the same towers, data and budget on the unit sphere with cosine logits and the contrastive objective only."""

from hypalign.recipes.meru import CLIP_RECIPE as RECIPE

__all__ = ["RECIPE"]
