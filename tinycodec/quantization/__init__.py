"""Vector quantization: EMA codebooks, k-means init, dead codes, residual VQ.

Notebook: book/03_quantization.md
"""

from tinycodec.quantization.rvq import QuantizerStats, ResidualVectorQuantizer, code_statistics
from tinycodec.quantization.vq import EMAVectorQuantizer, kmeans, kmeans_plusplus, squared_distances

__all__ = [
    "EMAVectorQuantizer", "QuantizerStats", "ResidualVectorQuantizer", "code_statistics", "kmeans",
    "kmeans_plusplus", "squared_distances",
]
