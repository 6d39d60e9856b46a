"""Anchor-Guided Routing (AGR): choose each sample's assistant experts from its anchor and its reference.

The paper gives the idea (a backbone expert that is always on, assistant experts activated per category) but not
the equations; this is the design used here (docs/TRAINING.md explains the choices):

    pooled[b] = attention pool of LayerNorm(embedded reference tokens of b)  H learned queries (below)
    logits[b] = P_dom[domain_b] + P_sub[sub_b]          fixed anchor prior (buffers)
              + E_sub[sub_b]                           learned subcategory bias (zero at start)
              + G(pooled[b])                           learned gate (zero at start)
    probs     = softmax(logits)
    mix       = f * onehot(home) + (1 - f) * probs      f = model.anchor_floor: the anchor's fixed share
    slot 0    = the domain's home expert (always)
    slots 1.. = top-(k-1) of logits over the other experts (the free slots)
    weights   = mix at the chosen experts (not renormalised, Switch-style)
    balance   = K * sum_e f_e * q_e over the free slots only, q = softmax of the logits without the home expert

What routing guarantees: every sample's slot 0 is its domain's home expert, and that expert's weight is at least
``anchor_floor`` whatever is learned (``w_home = f + (1 - f) p_home``); the other weights share the remaining
``1 - f``. The choice and weight of the free slots, and the home weight above the floor, are learned. It depends on
the sample's anchor and its clean reference only, never on the timestep or the noise.

``P_dom`` puts ``prior_scale`` on the domain's home expert and ``P_sub`` half of it on a second expert spread
over subcategories, so at initialisation routing is a pure function of the anchor (specialists from step 0, no
collapse onto one expert). Because the weights are the routing probabilities, the gate and the subcategory bias
get gradients even with top-1 (scaled by ``1 - f``).

Why a weight floor: pinning slot 0 (below) keeps the home expert chosen, but its weight is a softmax
probability, which the flow loss may drive to ~0 (random router states gave 1e-41 ... 9e-5), leaving an anchor in
name only. The floor makes its contribution a guarantee. The default 0.25 moves the home weight at
initialisation from 0.46 to 0.59 (K = 8, top-2, prior_scale 2) and keeps three quarters of the routing mass, and
of the gate's gradient, for what is learned; 0 gives the unfloored router back. A floor of 1 would leave no
gradient to the learned terms, hence ``< 1``.

Why attention pooling: the embedder of both backbones is linear, so the mean of the embedded tokens is the
embedding of the mean patch (in effect the reference's mean colour; for FLUX its mean latent): two references
with the same mean and different structure were indistinguishable, and the learned gate could be at most a
domain/subcategory lookup table. Each of ``POOL_HEADS`` learned queries ``q_h`` weights the LayerNormed tokens
by ``softmax_n(q_h . x_n / sqrt(D))`` and the gate reads the ``H`` weighted means; key and value projections are
left out because the score and the gate are linear in them, so they would fold into ``q_h`` and ``G``. The
LayerNorm has no affine part for the same reason. The queries start random (std 1), not zero: zero queries would
make every head the same mean and, with a zero gate, give every head the same gradient forever. The cost is
``2 H N D`` multiply-adds per sample and ``H D (K + 1)`` parameters for queries and gate: at FLUX scale (1024
reference tokens of 3072, K = 8) 25 M multiply-adds beside ~3e13 (12 B weights x 2560 tokens) for the
transformer's forward at 512 px per half, 112 k router parameters (32 k before), and on one CPU thread 72 ms
forward and backward against 12 ms for the mean (the fp32 ``x_embedder`` pass over the reference tokens that both
need: 300 ms).

Why the home slot is pinned and the balance loss sees only the free slots: builds are per domain, so a batch is
often one domain and every sample in it has the same home expert. The Switch loss then reads the home expert as
overloaded (half of all slots with top-2), and the only way to lower it is to push the home logit below another
expert's. With Adam that push is about ``lr`` per step on every gate weight whatever ``balance_coef`` is, so the
learned terms outgrew the fixed prior within the learning-rate warm-up (measured: home share 0.5 -> 0.0 by step
90 of single-domain training) and the anchor was gone. Balancing the home load is never achievable in that case
and is decided by the data's domain mix in any case, so the loss balances only what the anchor leaves free: the
experts of the free slots, through a softmax that excludes each sample's home expert (its logit gets no gradient
from the balance loss). Pinning slot 0 makes the anchor's slot a guarantee rather than a tendency. A bound on
the learned logits was the alternative; a bound small enough to keep the home expert first (below
``prior_scale / 4``) also freezes the choice of the second expert, which is the part worth learning.

``model.routing: random`` is the ablation that asks what routing by anchor adds to MoT's capacity
(``RandomRouter``): the same k experts per sample, each weighted ``1/k`` (the weights sum to 1; anchor routing's are
entries of one distribution, so they sum to at most 1), chosen by a frozen random gate (random queries and a random
projection, drawn from the seeded RNG and saved with the checkpoint) over the *raw* reference tokens, before any
trained layer. It is not trained, ignores the anchor (no prior, no floor) and has no balance loss. A fixed function
of the reference rather than a fresh draw per step, so a reference always meets the experts it was trained with and
``edit`` is deterministic; over the raw tokens rather than the embedded ones, because the built-in editor trains its
embedding and the choice would drift during the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unieditkit.training.model.anchors import Anchors
from unieditkit.training.config import ModelConfig
from unieditkit.training.model.mot import Routing
from unieditkit.errors import UserError

POOL_HEADS = 4


@dataclass(frozen=True)
class RouterOutput:
    """What one routing decision produced: the routing itself, the routing distribution over all experts (its
    entries at the chosen experts are the weights) and the balance loss."""

    routing: Routing
    probs: torch.Tensor
    balance_loss: torch.Tensor

    def expert_load(self) -> torch.Tensor:
        """Fraction of expert slots that went to each expert in this batch (sums to 1)."""
        k = self.routing.indices.shape[1]
        counts = torch.bincount(self.routing.indices.flatten(), minlength=self.probs.shape[1]).float()
        return counts / (self.routing.indices.shape[0] * k)


def home_expert(domain: int, num_experts: int) -> int:
    """The expert a domain's anchor prior points at; domains share experts round-robin when K < domains."""
    return domain % num_experts


def secondary_expert(domain: int, subcategory: int, num_experts: int) -> int:
    """A second expert per subcategory, never the domain's home one, spread so subcategories share load."""
    if num_experts == 1:
        return 0
    return (home_expert(domain, num_experts) + 1 + subcategory % (num_experts - 1)) % num_experts


def attention_pool(tokens: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """``(B, N, D)`` tokens and ``(H, D)`` queries -> ``(B, H * D)``: per query, the tokens' LayerNormed
    features averaged with the weights ``softmax_n(q . x_n / sqrt(D))`` (the module docstring says why)."""
    x = F.layer_norm(tokens.float(), tokens.shape[-1:])
    scores = torch.einsum("bnd,hd->bhn", x, queries) / math.sqrt(x.shape[-1])
    return torch.einsum("bhn,bnd->bhd", scores.softmax(dim=-1), x).flatten(1)


class AnchorGuidedRouter(nn.Module):
    """Routes a batch given domain indices, subcategory ids and the embedded reference tokens."""

    def __init__(
        self,
        num_experts: int,
        top_k: int,
        num_domains: int,
        num_subcategories: int,
        feature_dim: int,
        prior_scale: float = ModelConfig.prior_scale,
        subcategory_domains: list[int] | None = None,
        anchor_floor: float = ModelConfig.anchor_floor,
    ) -> None:
        """``subcategory_domains[s]`` is the domain of subcategory id ``s`` (for the fixed secondary prior);
        id ``num_subcategories`` is reserved for "unknown subcategory" and has no prior."""
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise UserError(f"model.top_k ({top_k}) must be between 1 and model.num_experts ({num_experts})")
        if not 0.0 <= anchor_floor < 1.0:
            raise UserError(f"model.anchor_floor must be in [0, 1), got {anchor_floor}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.num_domains = num_domains
        self.num_subcategories = num_subcategories
        self.anchor_floor = anchor_floor
        home = torch.tensor([home_expert(d, num_experts) for d in range(num_domains)], dtype=torch.long)
        dom = F.one_hot(home, num_experts).float() * prior_scale
        sub = torch.zeros(num_subcategories + 1, num_experts)
        if subcategory_domains is not None and top_k > 1:
            for s, d in enumerate(subcategory_domains):
                if 0 <= d < num_domains:
                    sub[s, secondary_expert(d, s, num_experts)] = prior_scale / 2
        self.register_buffer("home", home, persistent=False)
        self.register_buffer("domain_prior", dom, persistent=False)
        self.register_buffer("subcategory_prior", sub, persistent=False)
        self.subcategory_bias = nn.Embedding(num_subcategories + 1, num_experts)
        nn.init.zeros_(self.subcategory_bias.weight)
        self.query = nn.Parameter(torch.randn(POOL_HEADS, feature_dim))
        self.gate = nn.Linear(POOL_HEADS * feature_dim, num_experts)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def gate_input(self, tokens: torch.Tensor) -> torch.Tensor:
        """What the learned gate reads: ``(B, POOL_HEADS * D)`` pooled from ``(B, N, D)`` embedded tokens."""
        return attention_pool(tokens, self.query)

    def forward(self, domain: torch.Tensor, subcategory: torch.Tensor, *, raw: torch.Tensor,
                embedded: torch.Tensor) -> RouterOutput:
        """``domain`` (B,) in ``[0, num_domains)``; ``subcategory`` (B,) any int (out of range = unknown);
        ``embedded`` (B, N, feature_dim) the reference tokens after the backbone's input embedding (``raw``, the
        tokens before it, is what ``RandomRouter`` reads; unused here)."""
        sub = torch.where(
            (subcategory >= 0) & (subcategory < self.num_subcategories),
            subcategory,
            torch.full_like(subcategory, self.num_subcategories),
        )
        logits = (
            self.domain_prior[domain]
            + self.subcategory_prior[sub]
            + self.subcategory_bias(sub)
            + self.gate(self.gate_input(embedded))
        ).float()
        home = self.home[domain][:, None]
        floor = self.anchor_floor
        mix = (1.0 - floor) * logits.softmax(dim=-1) + floor * F.one_hot(home[:, 0], self.num_experts)
        if self.top_k == 1:
            return RouterOutput(Routing(home, mix.gather(1, home)), mix, logits.new_zeros(()))
        free_logits = logits.scatter(1, home, float("-inf"))
        free = free_logits.topk(self.top_k - 1, dim=-1).indices
        indices = torch.cat([home, free], dim=1)
        balance = balance_loss(free_logits.softmax(dim=-1), free)
        return RouterOutput(Routing(indices, mix.gather(1, indices)), mix, balance)


class RandomRouter(nn.Module):
    """``model.routing: random``: k experts per sample from a frozen random gate over the raw reference tokens,
    each weighted ``1/k`` (the module docstring says why). The gate is persistent buffers, so a checkpoint
    carries the routing it was trained with."""

    def __init__(self, num_experts: int, top_k: int, raw_dim: int) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise UserError(f"model.top_k ({top_k}) must be between 1 and model.num_experts ({num_experts})")
        self.num_experts = num_experts
        self.top_k = top_k
        self.register_buffer("query", torch.randn(POOL_HEADS, raw_dim))
        self.register_buffer("projection", torch.randn(POOL_HEADS * raw_dim, num_experts))

    def forward(self, domain: torch.Tensor, subcategory: torch.Tensor, *, raw: torch.Tensor,
                embedded: torch.Tensor) -> RouterOutput:
        """Same call as ``AnchorGuidedRouter``; reads ``raw`` (B, N, raw_dim) only."""
        with torch.no_grad():
            logits = attention_pool(raw, self.query) @ self.projection
        indices = logits.topk(self.top_k, dim=-1).indices
        weights = torch.full(indices.shape, 1.0 / self.top_k, device=indices.device)
        probs = torch.zeros_like(logits).scatter(1, indices, weights)
        return RouterOutput(Routing(indices, weights), probs, logits.new_zeros(()))


def make_router(
    routing: str, num_experts: int, top_k: int, anchors: Anchors, embedded_dim: int, raw_dim: int,
    prior_scale: float = ModelConfig.prior_scale, anchor_floor: float = ModelConfig.anchor_floor,
) -> AnchorGuidedRouter | RandomRouter:
    """The router ``model.routing`` names, for a backbone whose reference tokens are ``raw_dim`` wide before
    its input embedding and ``embedded_dim`` after it."""
    if routing == "random":
        return RandomRouter(num_experts, top_k, raw_dim)
    return AnchorGuidedRouter(num_experts, top_k, anchors.num_domains, anchors.num_subcategories, embedded_dim,
                              prior_scale, list(anchors.subcategory_domains), anchor_floor)


def routing_note(m: ModelConfig) -> str:
    """The run log's line on how experts are chosen (``train.py`` writes it at step 0)."""
    if m.routing == "random":
        return ("model.routing: random (ablation): each sample's experts are fixed by a frozen random gate over its "
                f"raw reference tokens, weighted 1/{m.top_k}; not trained, no anchor prior, no balance loss "
                "(model.prior_scale, model.anchor_floor and optim.balance_coef are unused)")
    free = (f"{m.top_k - 1} more chosen by the learned gate over the attention-pooled reference" if m.top_k > 1
            else "the only slot (top_k 1)")
    return (f"model.routing: anchor: slot 0 is the domain's home expert with weight >= model.anchor_floor "
            f"{m.anchor_floor}, {free}")


def balance_loss(probs: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Switch-Transformer auxiliary loss ``K * sum_e f_e * P_e``; 1.0 when load is perfectly uniform.

    ``f_e`` (fraction of expert slots taken by ``e``) is not differentiable; ``P_e`` (mean router probability)
    carries the gradient that pushes probability away from overloaded experts. The router passes only the free
    slots and the probabilities without each sample's home expert, so with one domain in the batch the floor is
    ``K / (K - 1)`` (the home expert cannot take a free slot).
    """
    num_experts = probs.shape[1]
    f = F.one_hot(indices, num_experts).float().sum(dim=(0, 1)) / indices.numel()
    p = probs.mean(dim=0)
    return num_experts * torch.sum(f * p)
