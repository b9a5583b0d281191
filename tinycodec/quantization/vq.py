"""One vector quantizer with an EMA codebook, k-means init and dead-code replacement.

Nearest-code search, then (training only) the codebook follows the data by
exponential moving averages instead of gradients (van den Oord et al. 2017, App. A.1)::

    n_k   <- decay * n_k   + (1 - decay) * #{frames assigned to k}        (cluster_size)
    m_k   <- decay * m_k   + (1 - decay) * sum of frames assigned to k    (embed_avg)
    n~_k  =  (n_k + eps) / (sum_j n_j + K eps) * sum_j n_j                (Laplace smoothing)
    e_k   =  m_k / n~_k                                                   (embed)

Counts and sums are all-reduced over ranks when torch.distributed is initialised, so
every rank holds the same codebook.

Dead codes. ``n_k`` above tracks *per-step* counts: with 256 frames per step and 512
codes it averages 0.5, so a per-step threshold (EnCodec's 2, which assumes thousands of
frames per step) would call almost every code dead and re-seed it at every step, and the
decoder could never learn what the codes mean. We count uses over a *window of frames*
instead, independent of the batch size::

    u_k <- exp(-N / W) * u_k + #{frames assigned to k}     (usage; N frames this step)

``u_k`` is about ``p_k * W`` for a code used with probability ``p_k``; with
``W = dead_code_window * K`` a uniformly used code scores ``dead_code_window``. A code is
dead when ``u_k < threshold_ema_dead_code``, i.e. it was used fewer than that many times
in the last ``W`` frames, and is then re-seeded with a random frame of the current batch
(with ``2 * threshold`` uses of grace). Once every code earns its keep, replacement stops.

Notebook: book/03_quantization.md
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinycodec.quantization.distrib import all_reduce_sum, broadcast


def _jitter(x: Tensor) -> Tensor:
    """``x`` plus 1% of its spread as noise. Repeated frames must not become identical
    codes: argmin between equal distances is decided by rounding, which differs between
    a chunked and an offline run."""
    spread = x.std(0).mean() if x.shape[0] > 1 else x.std()
    return x + 0.01 * (spread + 1e-8) * torch.randn_like(x)


def _sample_rows(x: Tensor, n: int) -> Tensor:
    """``n`` distinct random rows of ``x`` [N, D]; when N < n the repeats are jittered."""
    if x.shape[0] >= n:
        return x[torch.randperm(x.shape[0], device=x.device)[:n]]
    extra = x[torch.randint(0, x.shape[0], (n - x.shape[0],), device=x.device)]
    return torch.cat([x[torch.randperm(x.shape[0], device=x.device)], _jitter(extra)])


def squared_distances(x: Tensor, embed: Tensor) -> Tensor:
    """``||x_i - e_k||^2`` for x [N, D], embed [K, D] -> [N, K] (one matmul, K*D MACs per frame)."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1)[None, :]


def kmeans_plusplus(x: Tensor, num_clusters: int) -> Tensor:
    """k-means++ seeding: each new centre is a frame drawn with probability ~ D(x)^2.

    Random frames as seeds often put two centres in one cluster and none in another,
    a local minimum Lloyd cannot leave; D^2 sampling makes that unlikely.

    Args:
        x (Tensor): [N, D] frames.
        num_clusters (int): K; when N < K the extra centres repeat random frames.

    Returns:
        Tensor: [K, D] initial centres.
    """
    idx = [int(torch.randint(0, x.shape[0], (1,)))]
    d2 = (x - x[idx[0]]).pow(2).sum(1)
    for _ in range(1, num_clusters):
        total = d2.sum()
        if total > 0:
            j = int(torch.multinomial(d2 / total, 1))
        else:  # every frame is already a centre: the rest become jittered copies
            extra = x[torch.randint(0, x.shape[0], (num_clusters - len(idx),), device=x.device)]
            return torch.cat([x[torch.tensor(idx, device=x.device)], _jitter(extra)])
        idx.append(j)
        d2 = torch.minimum(d2, (x - x[j]).pow(2).sum(1))
    return x[torch.tensor(idx, device=x.device)].clone()


def kmeans(x: Tensor, num_clusters: int, num_iters: int = 10) -> tuple[Tensor, Tensor]:
    """k-means++ seeding then Lloyd iterations on frames ``x`` [N, D].

    When torch.distributed is initialised the seeds are rank 0's (broadcast) and each
    Lloyd step all-reduces cluster counts and sums, so every rank gets the same centres.
    An empty cluster keeps its previous centre.

    Returns:
        tuple[Tensor, Tensor]: centres [K, D] and cluster sizes [K] of the last assignment.
    """
    centres = broadcast(kmeans_plusplus(x, num_clusters))
    counts = torch.zeros(num_clusters, device=x.device, dtype=x.dtype)
    for _ in range(num_iters):
        assign = squared_distances(x, centres).argmin(1)
        counts = all_reduce_sum(torch.bincount(assign, minlength=num_clusters).to(x.dtype))
        sums = all_reduce_sum(torch.zeros_like(centres).index_add_(0, assign, x))
        nonempty = counts > 0
        centres = torch.where(nonempty[:, None], sums / counts.clamp(min=1)[:, None], centres)
    return centres, counts


# the codebooks' EMA statistics: training needs them, encoding and decoding do not read them
TRAINING_ONLY_BUFFERS = (".embed_avg", ".cluster_size")


class EMAVectorQuantizer(nn.Module):
    """Vector quantizer with an EMA-updated codebook of ``codebook_size`` codes of ``dim``.

    Args:
        dim (int): D, embedding dimension.
        codebook_size (int): K.
        decay (float): EMA decay of cluster sizes and sums.
        epsilon (float): Laplace smoothing constant.
        kmeans_init (bool): initialise the codebook by k-means on the first training batch.
        kmeans_iters (int): Lloyd iterations of that k-means.
        threshold_ema_dead_code (float): a code used fewer times than this within the last
            ``dead_code_window * codebook_size`` frames is re-seeded (0 disables).
        dead_code_window (float): the usage window, in frames per code (0: EnCodec's per-step
            rule on ``cluster_size``, which re-seeds almost every code when a step has fewer frames
            than codes; kept for comparison).
    """

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, epsilon: float = 1e-5,
                 kmeans_init: bool = True, kmeans_iters: int = 10,
                 threshold_ema_dead_code: float = 2.0, dead_code_window: float = 32.0) -> None:
        super().__init__()
        if dead_code_window < 0:
            raise ValueError(f"dead_code_window must be >= 0, got {dead_code_window}")
        self.dim, self.codebook_size = dim, codebook_size
        self.decay, self.epsilon = decay, epsilon
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.window_frames = dead_code_window * codebook_size
        # a random (not zero) start keeps untrained models' codes informative (the same numbers as
        # torch.randn); on the meta device (size checks) a random fill would run torch's python
        # decompositions, 0.4 s at every start of the command line, for values that do not exist
        embed = torch.empty(codebook_size, dim)
        if embed.device.type != "meta":
            embed.normal_()
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        # uses per code over the last window_frames frames (see the module docstring)
        self.register_buffer("usage", torch.full((codebook_size,), float(dead_code_window)))
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.last_replaced = 0  # codes re-seeded by the last training step

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the usage window existed: start with a fresh window
        state_dict.setdefault(prefix + "usage", torch.full_like(self.usage, self.window_frames / self.codebook_size))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_usage(self) -> None:
        """Every code counts as used as often as expected (a fresh window, e.g. after loading
        weights without training statistics)."""
        self.usage.fill_(self.window_frames / self.codebook_size)

    # -- search ----------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Args: x (Tensor): [B, D, F]. Returns: LongTensor: [B, F] nearest-code indices.

        Outside training the search runs in float64: float32 matmul rounding depends on
        how many frames are searched at once, which can flip a near-tie between a chunked
        (streaming) and an offline run; at float64 such ties need codes ~1e-12 apart.
        """
        flat = x.transpose(1, 2).reshape(-1, self.dim)
        if self.training:
            embed_t, norms = self.embed.t(), self.embed.pow(2).sum(1)
        else:
            embed_t, norms = self._eval_codebook()
            flat = flat.double()
        # ||x||^2 is the same for every code: the argmin needs only ||e||^2 - 2 x.e
        return torch.addmm(norms, flat, embed_t, alpha=-2).argmin(1).view(x.shape[0], x.shape[2])

    def _eval_codebook(self) -> tuple[Tensor, Tensor]:
        """float64 codebook [D, K] (transposed) and squared norms [K], cached until
        ``embed`` changes (one frame per call would otherwise pay the conversion each time)."""
        if self.embed.is_inference():  # no version counter: cannot tell if it changed
            embed = self.embed.double()
            return embed.t(), embed.pow(2).sum(1)
        key = (self.embed.data_ptr(), self.embed._version, self.embed.device)
        cache = getattr(self, "_eval_cache", None)
        if cache is None or cache[0] != key:
            embed = self.embed.detach().double()
            cache = (key, embed.t().contiguous(), embed.pow(2).sum(1))
            self._eval_cache = cache
        return cache[1], cache[2]

    def decode(self, indices: Tensor) -> Tensor:
        """Args: indices (LongTensor): [B, F]. Returns: Tensor: [B, D, F]."""
        return F.embedding(indices, self.embed).transpose(1, 2)

    # -- training updates --------------------------------------------------------------
    @torch.no_grad()
    def init_kmeans(self, frames: Tensor) -> None:
        """Set the codebook to k-means centres of ``frames`` [N, D]."""
        centres, counts = kmeans(frames, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(centres)
        # EMA statistics consistent with the centres (embed == embed_avg / cluster_size);
        # clusters k-means left empty start dead and are re-seeded by the first update
        self.cluster_size.copy_(counts)
        self.embed_avg.copy_(centres * counts[:, None])
        # k-means' non-empty clusters start with a full window of expected use
        self.usage.copy_((counts > 0).to(self.usage.dtype) * self.window_frames / self.codebook_size)
        self.initialized.fill_(True)

    @torch.no_grad()
    def ema_update(self, frames: Tensor, indices: Tensor) -> None:
        """One EMA step from ``frames`` [N, D] assigned to ``indices`` [N] (all ranks summed)."""
        counts = all_reduce_sum(torch.bincount(indices, minlength=self.codebook_size).to(frames.dtype))
        sums = all_reduce_sum(torch.zeros_like(self.embed).index_add_(0, indices, frames))
        self.usage.mul_(math.exp(-float(counts.sum()) / self.window_frames) if self.window_frames > 0 else 0.0)
        self.usage.add_(counts)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    @torch.no_grad()
    def replace_dead_codes(self, frames: Tensor) -> Tensor:
        """Re-seed codes used fewer than ``threshold_ema_dead_code`` times in the window
        (``usage``) from random ``frames`` [N, D].

        The new code's EMA statistics are set to ``threshold`` observations of the frame,
        so the next EMA step keeps it instead of snapping back to the stale average, and its
        usage to ``2 * threshold``: a grace period of about ``0.7 * window`` frames to win frames.

        Returns:
            BoolTensor: [K] mask of replaced codes (its count is kept in ``last_replaced``).
        """
        # window 0: EnCodec's per-step rule on the EMA count (kept to measure what the window fixes)
        dead = (self.usage if self.window_frames > 0 else self.cluster_size) < self.threshold_ema_dead_code
        # usage is identical on every rank, so all ranks agree on taking this branch
        if self.threshold_ema_dead_code <= 0 or not bool(dead.any()):
            self.last_replaced = 0
            return torch.zeros_like(dead)
        if frames.shape[0]:
            new = _sample_rows(frames, self.codebook_size).contiguous()
        else:  # this rank saw no frames (quantizer dropout); rank 0's candidates win anyway
            new = self.embed.clone()
        new = broadcast(new)
        self.embed[dead] = new[dead]
        self.cluster_size[dead] = self.threshold_ema_dead_code
        self.embed_avg[dead] = new[dead] * self.threshold_ema_dead_code
        self.usage[dead] = 2 * self.threshold_ema_dead_code
        self.last_replaced = int(dead.sum())
        return dead

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Quantize; in training mode also update the codebook from the active examples.

        Args:
            x (Tensor): [B, D, F] residual to quantize.
            mask (Tensor | None): [B] bool, examples that use this quantizer (quantizer
                dropout); inactive examples do not update the codebook or the loss.

        Returns:
            tuple: quantized [B, D, F] (straight-through), indices LongTensor [B, F],
            commitment loss (scalar) ``mean ||x - sg(q)||^2`` over active frames.
        """
        B, D, n_frames = x.shape
        active = torch.ones(B, dtype=torch.bool, device=x.device) if mask is None else mask
        frames = x.detach().transpose(1, 2)[active].reshape(-1, D)
        # k-means on a non-finite batch would seed NaN codes: wait for a finite batch (the trainer's
        # NaN guard then skips this step and rolls the codebook back)
        if self.training and not bool(self.initialized) and bool(torch.isfinite(x).all()):
            # all examples, not only the active ones: every rank needs frames for k-means
            self.init_kmeans(x.detach().transpose(1, 2).reshape(-1, D))
        indices = self.encode(x.detach())
        q = self.decode(indices)
        if self.training:
            self.ema_update(frames, indices[active].reshape(-1))
            self.replace_dead_codes(frames)
        if bool(active.any()):
            commit = F.mse_loss(x[active], q[active].detach())
        else:
            commit = x.new_zeros(())
        quantized = x + (q - x).detach()  # straight-through: identity gradient to the encoder
        return quantized, indices, commit
