"""Anchor-Guided Routing (AGR): choose each sample's assistant experts from its anchor and its reference.

The paper gives the idea (a backbone expert that is always on, assistant experts activated per category) but not
the equations; this is the design used here (docs/TRAINING.md explains the choices):

    logits[b] = P_dom[domain_b] + P_sub[sub_b]          fixed anchor prior (buffers)
              + E_sub[sub_b]                           learned subcategory bias (zero at start)
              + G(LayerNorm(pooled reference features))  learned gate (zero at start)
    probs     = softmax(logits)
    slot 0    = the domain's home expert (always)
    slots 1.. = top-(k-1) of probs over the other experts (the free slots)
    weights   = probs at the chosen experts (not renormalised, Switch-style)
    balance   = K * sum_e f_e * q_e over the free slots only, q = softmax of the logits without the home expert

``P_dom`` puts ``prior_scale`` on the domain's home expert and ``P_sub`` half of it on a second expert spread
over subcategories, so at initialisation routing is a pure function of the anchor (specialists from step 0, no
collapse onto one expert). Because the weights are the softmax probabilities, the gate and the subcategory bias
get gradients even with top-1.

Why the home slot is pinned and the balance loss sees only the free slots: builds are per domain, so a batch is
often one domain and every sample in it has the same home expert. The Switch loss then reads the home expert as
overloaded (half of all slots with top-2), and the only way to lower it is to push the home logit below another
expert's. With Adam that push is about ``lr`` per step on every gate weight whatever ``balance_coef`` is, so the
learned terms outgrew the fixed prior within the learning-rate warm-up (measured: home share 0.5 -> 0.0 by step
90 of single-domain training) and the anchor was gone. Balancing the home load is never achievable in that case
and is decided by the data's domain mix in any case, so the loss balances only what the anchor leaves free: the
experts of the free slots, through a softmax that excludes each sample's home expert (its logit gets no gradient
from the balance loss). Pinning slot 0 makes the anchor a guarantee rather than a tendency: the flow loss may
still lower the home expert's *weight* if the data asks for it, but never evict it. A bound on the learned
logits was the alternative; a bound small enough to keep the home expert first (below ``prior_scale / 4``) also
freezes the choice of the second expert, which is the part worth learning.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from training.mot import Routing
from unieditkit.errors import UserError


@dataclass(frozen=True)
class RouterOutput:
    """What one routing decision produced: the routing itself, the full probabilities and the balance loss."""

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


class AnchorGuidedRouter(nn.Module):
    """Routes a batch given domain indices, subcategory ids and pooled reference features."""

    def __init__(
        self,
        num_experts: int,
        top_k: int,
        num_domains: int,
        num_subcategories: int,
        feature_dim: int,
        prior_scale: float = 2.0,
        subcategory_domains: list[int] | None = None,
    ) -> None:
        """``subcategory_domains[s]`` is the domain of subcategory id ``s`` (for the fixed secondary prior);
        id ``num_subcategories`` is reserved for "unknown subcategory" and has no prior."""
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise UserError(f"model.top_k ({top_k}) must be between 1 and model.num_experts ({num_experts})")
        self.num_experts = num_experts
        self.top_k = top_k
        self.num_domains = num_domains
        self.num_subcategories = num_subcategories
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
        self.norm = nn.LayerNorm(feature_dim)
        self.gate = nn.Linear(feature_dim, num_experts)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, domain: torch.Tensor, subcategory: torch.Tensor, features: torch.Tensor) -> RouterOutput:
        """``domain`` (B,) in ``[0, num_domains)``; ``subcategory`` (B,) any int (out of range = unknown);
        ``features`` (B, feature_dim) pooled reference features."""
        sub = torch.where(
            (subcategory >= 0) & (subcategory < self.num_subcategories),
            subcategory,
            torch.full_like(subcategory, self.num_subcategories),
        )
        logits = (
            self.domain_prior[domain]
            + self.subcategory_prior[sub]
            + self.subcategory_bias(sub)
            + self.gate(self.norm(features.float()))
        ).float()
        probs = logits.softmax(dim=-1)
        home = self.home[domain][:, None]
        if self.top_k == 1:
            return RouterOutput(Routing(home, probs.gather(1, home)), probs, logits.new_zeros(()))
        free_logits = logits.scatter(1, home, float("-inf"))
        free = free_logits.topk(self.top_k - 1, dim=-1).indices
        indices = torch.cat([home, free], dim=1)
        balance = balance_loss(free_logits.softmax(dim=-1), free)
        return RouterOutput(Routing(indices, probs.gather(1, indices)), probs, balance)


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
