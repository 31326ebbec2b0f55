"""A structure tokenizer (DPLM-2's, spec §5.1): an SE(3)-invariant encoder of local backbone geometry, lookup-free
quantisation to 13 sign bits per residue (8,192 codes), and a decoder that rebuilds the N, CA, C, O coordinates.

**Frames and features** (:func:`backbone_frames`, :func:`invariant_features`): residue ``i``'s frame has its origin at
``CA_i`` and axes ``e1 = unit(C − CA)``, ``e2 = unit(v − (v·e1) e1)`` with ``v = N − CA``, ``e3 = e1 × e2``
(columns of ``R_i``). Node features: ``sin``/``cos`` of the backbone dihedrals φ, ψ, ω (zero where undefined, at the
chain ends) and the O atom in the residue's own frame. Edge features to the ``k`` nearest residues (CA distance):
16 Gaussian radial basis functions of the distance (0–20 Å), the direction ``R_iᵀ(CA_j − CA_i)/d``, the relative
rotation ``R_iᵀ R_j`` and ``R_iᵀ(N_j − CA_i)``, ``R_iᵀ(C_j − CA_i)`` (÷10), and the sequence offset ``j − i``
(clamped to ±32, embedded). All are unchanged by any rotation or translation of the chain.

**Encoder**: ``n_mp`` message-passing layers over those edges (``h_i += W mean_j GELU(A h_i + B h_j + C e_ij)``,
then a feed-forward block), ``n_enc_tf`` transformer layers along the chain, a linear map to ``z_cont ∈ R^{L×13}``.

**Lookup-free quantisation**: ``z_q = sign(z_cont)`` (straight-through gradient); the code is
``Σ_k [z_q,k > 0] 2^k``; terms: commitment ``|z − sign(z)|²`` (weight 0.25) and entropy (weight 0.1; per-residue
entropy minus the codebook entropy over all 8,192 codes — :func:`~hypalign.losses.structure.lfq_entropy`; bounding
the codebook entropy by the bits' marginals instead let the encoder collapse onto a dozen codes of correlated bits).

**Decoder** (:meth:`StructureTokenizer.decode_parts`): ``Linear(13, d)`` + sinusoidal position, ``n_dec`` transformer
layers; then (1) per residue the step from the previous residue's frame (a quaternion and a translation, from the
mean step over ProMod3's chains), chained into starting frames by a parallel prefix product (:func:`chain_frames`),
and (2) a structure module (:class:`StructureModule`, after AlphaFold 2's: ``n_iter`` rounds of invariant point
attention and a per-residue rigid-motion update of each frame) that refines those frames; N, CA, C placed ideally in
the final frames, O predicted. Trained with FAPE on the final atoms plus the error of the steps
(:func:`~hypalign.losses.structure.step_error`); the starting frames are held out of FAPE's gradient (through a
chain of steps every early step moves every later atom: FAPE's gradient there drowned the local signal). Earlier
decoders and what they did on the small split are in ``docs/structures.md``.

The continuous path (``decode(z_cont)``) is trained alongside with the same decoder, so "what quantisation costs"
is measured on one decoder.

**The 3Di anchor** (``alphabet="3di"``): foldseek's 20-letter structure alphabet (``mini3di``, fixed, not learned) as
the tokens, one-hot into the same decoder — how much backbone each alphabet's tokens determine, measured the same
way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

N_BITS = 13
N_3DI = 20  # foldseek's 3Di alphabet


def virtual_cb(x: np.ndarray) -> np.ndarray:
    """The ideal virtual C-beta of ``(L, 4, 3)`` backbones (foldseek's constants): with ``b = CA − N``,
    ``c = C − CA``, ``a = b × c``: ``CB = −0.58273431 a + 0.56802827 b − 0.54067466 c + CA``."""
    n, ca, c = x[:, 0], x[:, 1], x[:, 2]
    b, cc = ca - n, c - ca
    return -0.58273431 * np.cross(b, cc) + 0.56802827 * b - 0.54067466 * cc + ca


def tokens_3di(x: np.ndarray) -> np.ndarray:
    """foldseek's 3Di states (0–19, ``int64``) of one chain's backbone ``(L, 4, 3)`` (``mini3di``; virtual CB)."""
    import mini3di

    x = np.asarray(x, np.float64)
    states = mini3di.Encoder().encode_atoms(ca=x[:, 1], cb=virtual_cb(x), n=x[:, 0], c=x[:, 2])
    return np.asarray(states, np.int64)


def backbone_frames(x: Tensor) -> Tensor:
    """Rotations ``(…, L, 3, 3)`` (columns ``e1, e2, e3``) of the residues' frames from ``x`` ``(…, L, 4, 3)``."""
    n, ca, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
    e1 = nn.functional.normalize(c - ca, dim=-1, eps=1e-6)
    v = n - ca
    e2 = nn.functional.normalize(v - (v * e1).sum(-1, keepdim=True) * e1, dim=-1, eps=1e-6)
    e3 = torch.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def _dihedral(a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tensor:
    """IUPAC dihedral a-b-c-d: ``atan2(b̂₂·(n₁ × n₂), n₁·n₂)`` with ``n₁ = b₁ × b₂``, ``n₂ = b₂ × b₃`` (the α-helix's
    φ ≈ −60°, a trans peptide's ω ≈ 180°)."""
    b1, b2, b3 = b - a, c - b, d - c
    n1, n2 = torch.cross(b1, b2, dim=-1), torch.cross(b2, b3, dim=-1)
    y = (nn.functional.normalize(b2, dim=-1, eps=1e-6) * torch.cross(n1, n2, dim=-1)).sum(-1)
    return torch.atan2(y, (n1 * n2).sum(-1))


def dihedrals(x: Tensor, mask: Tensor) -> Tensor:
    """``(B, L, 6)``: sin and cos of φ_i (C_{i−1}, N, CA, C), ψ_i (N, CA, C, N_{i+1}), ω_i (CA, C, N_{i+1},
    CA_{i+1}); zero where a neighbour is missing (chain ends, padding)."""
    n, ca, c = x[:, :, 0], x[:, :, 1], x[:, :, 2]
    b, length = mask.shape
    out = x.new_zeros(b, length, 6)
    if length < 2:
        return out
    pair = mask[:, 1:] & mask[:, :-1]
    phi = _dihedral(c[:, :-1], n[:, 1:], ca[:, 1:], c[:, 1:])
    psi = _dihedral(n[:, :-1], ca[:, :-1], c[:, :-1], n[:, 1:])
    omega = _dihedral(ca[:, :-1], c[:, :-1], n[:, 1:], ca[:, 1:])
    p = pair.to(x.dtype)
    out[:, 1:, 0], out[:, 1:, 1] = phi.sin() * p, phi.cos() * p
    out[:, :-1, 2], out[:, :-1, 3] = psi.sin() * p, psi.cos() * p
    out[:, :-1, 4], out[:, :-1, 5] = omega.sin() * p, omega.cos() * p
    return out


def gather_nodes(t: Tensor, nbr: Tensor) -> Tensor:
    """``t[b, nbr[b, i, j]]``: ``(B, L, *F)`` node values at the neighbour indices ``(B, L, k)`` → ``(B, L, k, *F)``
    (flat indexing: its gradient is an index-add into ``(B·L, F)``, not a scatter into a ``(B, L, L, F)`` copy)."""
    b, length = t.shape[:2]
    flat = (nbr + torch.arange(b, device=nbr.device)[:, None, None] * length).reshape(-1)
    return t.reshape(b * length, *t.shape[2:])[flat].view(*nbr.shape, *t.shape[2:])


def invariant_features(x: Tensor, mask: Tensor, k: int = 16) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(node (B, L, 9), edge (B, L, k, 34), neighbours (B, L, k), offsets (B, L, k))`` of ``x`` ``(B, L, 4, 3)``
    (module docstring); a residue's missing neighbours (chains shorter than ``k + 1``, padding) point at itself
    and are masked by ``neighbour_mask``-style checks of the caller via ``mask``."""
    rot = backbone_frames(x)
    ca = x[:, :, 1]
    length = mask.shape[1]
    k = max(1, min(k, length - 1)) if length > 1 else 1
    d = torch.cdist(ca, ca)
    big = torch.finfo(d.dtype).max / 4
    d = d.masked_fill(~(mask[:, :, None] & mask[:, None, :]), big)
    d = d + torch.eye(length, dtype=d.dtype, device=d.device)[None] * big  # not oneself
    dist, nbr = d.topk(k, dim=-1, largest=False)  # (B, L, k)
    ca_j, n_j, c_j = gather_nodes(ca, nbr), gather_nodes(x[:, :, 0], nbr), gather_nodes(x[:, :, 2], nbr)
    r_t = rot.transpose(-1, -2).unsqueeze(2)  # (B, L, 1, 3, 3): world -> frame i
    local = lambda v: (r_t @ v.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    rel = ca_j - ca.unsqueeze(2)
    dist = rel.norm(dim=-1)
    direction = local(rel) / dist.clamp_min(1e-6).unsqueeze(-1)
    rot_j = gather_nodes(rot, nbr)
    rel_rot = (r_t @ rot_j).flatten(-2)
    centres = torch.linspace(0.0, 20.0, 16, device=x.device, dtype=x.dtype)
    rbf = torch.exp(-(((dist.unsqueeze(-1) - centres) / 1.25) ** 2))
    atoms = torch.cat([local(n_j - ca.unsqueeze(2)), local(c_j - ca.unsqueeze(2))], -1) / 10.0
    edge = torch.cat([rbf, direction, rel_rot, atoms], -1)
    o_local = (rot.transpose(-1, -2) @ (x[:, :, 3] - ca).unsqueeze(-1)).squeeze(-1) / 2.0
    node = torch.cat([dihedrals(x, mask), o_local], -1)
    offsets = (nbr - torch.arange(length, device=x.device)[None, :, None]).clamp(-32, 32)
    return node, edge, nbr, offsets


class _MessageLayer(nn.Module):
    """``h_i ← LN(h_i + W₂ mean_j GELU(A h_i + B h_j + C e_ij))`` then a feed-forward block: the first linear map of
    the message MLP is split by input (``A h`` and ``B h`` once per residue, ``C e`` per edge) and the second applied
    after the mean (it commutes with it), so an edge costs one ``d_edge × d`` product."""

    def __init__(self, d: int, d_edge: int) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d, bias=False)
        self.c = nn.Linear(d_edge, d, bias=False)
        self.out = nn.Linear(d, d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, h: Tensor, edge: Tensor, nbr: Tensor, emask: Tensor) -> Tensor:
        m = nn.functional.gelu(self.a(h).unsqueeze(2) + gather_nodes(self.b(h), nbr) + self.c(edge))
        m = m * emask.unsqueeze(-1)
        h = self.ln1(h + self.out(m.sum(2) / emask.sum(2, keepdim=True).clamp_min(1.0)))
        return self.ln2(h + self.ffn(h))


def _sinusoid(length: int, d: int, device: torch.device) -> Tensor:
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, device=device)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq[: d // 2])
    return pe


def _transformer(d: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


#: ideal backbone atoms in a residue's own frame (origin CA, e1 towards C, N in the e1-e2 plane; Å): the mean over
#: ProMod3's chains (N–CA 1.458 Å, CA–C 1.524 Å, N-CA-C 111°); O's place varies with ψ and is predicted
IDEAL_N = (-0.523, 1.3589, 0.0)
IDEAL_C = (1.5242, 0.0, 0.0)
MEAN_O = (2.1504, -0.1393, -0.0245)


def quat_to_rot(bcd: Tensor) -> Tensor:
    """Rotation matrices ``(…, 3, 3)`` of the unit quaternions ``(1, b, c, d) / |·|`` (AlphaFold's backbone update:
    the zero vector is the identity)."""
    return quat_wxyz_to_rot(torch.cat([torch.ones_like(bcd[..., :1]), bcd], -1))


#: the mean rigid motion from a residue's frame to the next one's over ProMod3's chains (the rotation: the mean
#: matrix projected onto SO(3), as a unit quaternion w, x, y, z; the translation of CA in Å, mostly along e1)
MEAN_STEP_QUAT = (0.4433, 0.6941, -0.4642, 0.3260)
MEAN_STEP_TRANS = (3.566, 0.169, 0.028)


def quat_wxyz_to_rot(q: Tensor) -> Tensor:
    """Rotation matrices ``(…, 3, 3)`` of the quaternions ``q`` ``(…, 4)`` (``w, x, y, z``; normalised here)."""
    a, b, c, d = nn.functional.normalize(q, dim=-1, eps=1e-6).unbind(-1)
    return torch.stack([
        a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c),
        2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b),
        2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d,
    ], -1).view(*q.shape[:-1], 3, 3)


def relative_steps(x: Tensor) -> tuple[Tensor, Tensor]:
    """The rigid motion from each residue's frame to the next one's in a backbone ``x`` ``(B, L, 4, 3)``:
    rotations ``R_{i−1}ᵀ R_i`` ``(B, L, 3, 3)`` and translations ``R_{i−1}ᵀ (CA_i − CA_{i−1})`` ``(B, L, 3)`` (Å);
    row 0 is the identity (the chain's first frame)."""
    rot, ca = backbone_frames(x), x[:, :, 1]
    r_t = rot[:, :-1].transpose(-1, -2)
    rel_rot = torch.cat([torch.eye(3, dtype=x.dtype, device=x.device).expand(x.shape[0], 1, 3, 3),
                         r_t @ rot[:, 1:]], 1)
    rel_t = torch.cat([x.new_zeros(x.shape[0], 1, 3), (r_t @ (ca[:, 1:] - ca[:, :-1]).unsqueeze(-1)).squeeze(-1)], 1)
    return rel_rot, rel_t


def chain_frames(rel_rot: Tensor, rel_t: Tensor) -> tuple[Tensor, Tensor]:
    """Frames ``F_i = T_1 ∘ T_2 ∘ … ∘ T_i`` of a chain whose step from residue ``i − 1`` to ``i`` is ``T_i =
    (rel_rot[:, i], rel_t[:, i])`` (``(B, L, 3, 3)``, ``(B, L, 3)``; step 0 ignored: ``F_0`` is the identity at the
    origin), with ``(R_a, t_a) ∘ (R_b, t_b) = (R_a R_b, R_a t_b + t_a)``: a parallel prefix product (Hillis–Steele,
    ⌈log₂ L⌉ rounds), differentiable. Returns rotations and translations in the units of ``rel_t``."""
    b, length = rel_t.shape[:2]
    rot = torch.cat([torch.eye(3, dtype=rel_rot.dtype, device=rel_rot.device).expand(b, 1, 3, 3), rel_rot[:, 1:]], 1)
    t = torch.cat([rel_t.new_zeros(b, 1, 3), rel_t[:, 1:]], 1)
    s = 1
    while s < length:
        r_prev, t_prev = rot[:, :-s], t[:, :-s]
        t = torch.cat([t[:, :s], (r_prev @ t[:, s:].unsqueeze(-1)).squeeze(-1) + t_prev], 1)
        rot = torch.cat([rot[:, :s], r_prev @ rot[:, s:]], 1)
        s *= 2
    return rot, t


class PointAttention(nn.Module):
    """Invariant point attention, lite (after AlphaFold 2's IPA, without the pair track): per head, scalar
    queries/keys/values plus ``points`` query/key/value points placed in each residue's current frame; logits
    ``q·k/√c − γ_h/2 Σ_p |T_i q_p − T_j k_p|² + b_h(j − i)`` (a learned bias per clamped sequence offset); the output
    points are brought back into the residue's own frame, so the block is invariant to a global rigid motion."""

    def __init__(self, d: int, heads: int, points: int = 4, c: int = 16) -> None:
        super().__init__()
        self.h, self.p, self.c = heads, points, c
        self.qkv = nn.Linear(d, 3 * heads * c, bias=False)
        self.qk_pts = nn.Linear(d, 2 * heads * points * 3)
        self.v_pts = nn.Linear(d, heads * points * 3)
        self.gamma = nn.Parameter(torch.zeros(heads))
        self.offset_bias = nn.Embedding(65, heads)
        self.out = nn.Linear(heads * (c + points * 4), d)

    def forward(self, s: Tensor, rot: Tensor, trans: Tensor, mask: Tensor) -> Tensor:
        b, length, _ = s.shape
        h, p, c = self.h, self.p, self.c
        q, k, v = self.qkv(s).view(b, length, 3, h, c).unbind(2)
        to_global = lambda pts: torch.einsum("blxy,blhpy->blhpx", rot, pts) + trans[:, :, None, None]  # noqa: E731
        qp, kp = self.qk_pts(s).view(b, length, 2, h, p, 3).unbind(2)
        qp, kp = to_global(qp), to_global(kp)  # (B, L, H, P, 3)
        vp = to_global(self.v_pts(s).view(b, length, h, p, 3))
        logits = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(c)
        qf, kf = qp.reshape(b, length, h, p * 3), kp.reshape(b, length, h, p * 3)
        d2 = (qf.square().sum(-1).transpose(1, 2).unsqueeze(-1) + kf.square().sum(-1).transpose(1, 2).unsqueeze(-2)
              - 2 * torch.einsum("bihx,bjhx->bhij", qf, kf))  # (B, H, L, L): Σ_p |q_p − k_p|²
        w = nn.functional.softplus(self.gamma) * math.sqrt(2.0 / (9.0 * p)) / 2
        logits = logits - w[None, :, None, None] * d2
        pos = torch.arange(length, device=s.device)
        logits = logits + self.offset_bias((pos[None, :] - pos[:, None]).clamp(-32, 32) + 32).permute(2, 0, 1)
        logits = logits.masked_fill(~mask[:, None, None, :], torch.finfo(logits.dtype).min)
        a = logits.softmax(-1)
        o = torch.einsum("bhij,bjhc->bihc", a, v).reshape(b, length, h * c)
        op = torch.einsum("bhij,bjhpx->bihpx", a, vp) - trans[:, :, None, None]
        op = torch.einsum("blyx,blhpy->blhpx", rot, op)  # back into frame i (R^T)
        feats = [o, op.reshape(b, length, -1), op.norm(dim=-1).reshape(b, length, -1)]
        return self.out(torch.cat(feats, -1))


class StructureModule(nn.Module):
    """``n_iter`` rounds of point attention + transition + a backbone update composing each residue's frame with a
    predicted small rigid motion (quaternion ``(1, b, c, d)`` and a translation, in the residue's frame; translations
    and attention points in nm inside the module, as AlphaFold 2's — in Å the distance term swamps the attention),
    starting from identity frames at the origin; atoms N, CA, C at their ideal places in the final frames, O at a
    predicted place (starting from its mean). The decoder starts it from the chained frames of
    :func:`chain_frames` instead of identity frames."""

    def __init__(self, d: int, heads: int, n_iter: int = 4) -> None:
        super().__init__()
        self.n_iter = n_iter
        self.ipa = PointAttention(d, heads)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.transition = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))
        self.update = nn.Linear(d, 6)
        nn.init.zeros_(self.update.weight)
        nn.init.zeros_(self.update.bias)
        self.o_head = nn.Linear(d, 3)
        nn.init.zeros_(self.o_head.weight)
        with torch.no_grad():
            self.o_head.bias.copy_(torch.tensor(MEAN_O))
        self.register_buffer("ideal", torch.tensor([IDEAL_N, (0.0, 0.0, 0.0), IDEAL_C]), persistent=False)

    def forward(self, s: Tensor, mask: Tensor, rot: Tensor | None = None, trans: Tensor | None = None) -> Tensor:
        """Backbone ``(B, L, 4, 3)`` (Å) from states ``s`` ``(B, L, d)``, starting from the frames ``rot``
        ``(B, L, 3, 3)`` / ``trans`` ``(B, L, 3)`` (nm; identity frames at the origin when not given)."""
        b, length, _ = s.shape
        if rot is None or trans is None:
            rot = torch.eye(3, dtype=s.dtype, device=s.device).expand(b, length, 3, 3)
            trans = s.new_zeros(b, length, 3)
        for _ in range(self.n_iter):
            s = self.ln1(s + self.ipa(s, rot, trans, mask))
            s = self.ln2(s + self.transition(s))
            u = self.update(s)
            trans = trans + torch.einsum("blxy,bly->blx", rot, u[..., 3:])  # nm, as AlphaFold's module works
            rot = rot @ quat_to_rot(u[..., :3])
        local = torch.cat([self.ideal.to(s.dtype).expand(b, length, 3, 3), self.o_head(s).unsqueeze(2)], 2)
        return torch.einsum("blxy,blay->blax", rot, local) + 10.0 * trans.unsqueeze(2)  # Å


class StructureTokenizer(nn.Module, PyTorchModelHubMixin, library_name="hypalign", tags=["protein-structure"]):
    """See the module docstring. ``forward(batch)`` reads ``batch["coords"]`` ``(B, L, 4, 3)`` and ``batch["mask"]``
    ``(B, L)`` and returns ``z`` (continuous codes), ``zq`` (±1), ``coords_q`` / ``coords_c`` (the decoder's
    reconstructions from the quantised and the continuous codes)."""

    def __init__(self, d: int = 128, heads: int = 4, k: int = 16, n_mp: int = 3, n_enc_tf: int = 2, n_dec: int = 4,
                 n_bits: int = N_BITS, d_edge: int = 64, alphabet: str = "lfq", n_iter: int = 4) -> None:
        super().__init__()
        if alphabet not in ("lfq", "3di"):
            raise ValueError(f"alphabet {alphabet!r}: expected lfq or 3di")
        self.k, self.n_bits, self.alphabet = k, n_bits, alphabet
        if alphabet == "lfq":  # the 3Di alphabet's tokens come from mini3di: no encoder to learn
            self.node_in = nn.Sequential(nn.Linear(9, d), nn.GELU(), nn.Linear(d, d))
            self.offset_emb = nn.Embedding(65, 16)
            self.edge_in = nn.Sequential(nn.Linear(34 + 16, d_edge), nn.GELU())
            self.mp = nn.ModuleList([_MessageLayer(d, d_edge) for _ in range(n_mp)])
            self.enc_tf = _transformer(d, heads, n_enc_tf) if n_enc_tf else None
            self.to_code = nn.Linear(d, n_bits)
        self.from_code = nn.Linear(n_bits if alphabet == "lfq" else N_3DI, d)
        self.dec_tf = _transformer(d, heads, n_dec)
        self.dec_norm = nn.LayerNorm(d)
        self.step_head = nn.Linear(d, 7)  # per residue: the step from the previous frame (quaternion, Å)
        with torch.no_grad():
            self.step_head.weight.mul_(0.1)
            self.step_head.bias.copy_(torch.tensor(MEAN_STEP_QUAT + MEAN_STEP_TRANS))
        self.structure = StructureModule(d, heads, n_iter=n_iter)

    # -- encoder -------------------------------------------------------------------------------------------------
    def encode(self, coords: Tensor, mask: Tensor) -> Tensor:
        """Continuous codes ``z`` ``(B, L, n_bits)`` (computed in the model's dtype)."""
        if self.alphabet != "lfq":
            raise ValueError("a 3di model has no encoder: its tokens come from mini3di (tokens_3di)")
        coords = coords.to(self.to_code.weight.dtype)
        node, edge, nbr, offsets = invariant_features(coords, mask, self.k)
        emask = (gather_nodes(mask, nbr) & mask.unsqueeze(-1)
                 & (nbr != torch.arange(mask.shape[1], device=mask.device)[None, :, None])).float()
        h = self.node_in(node)
        e = self.edge_in(torch.cat([edge, self.offset_emb(offsets + 32)], -1))
        for layer in self.mp:
            h = layer(h, e, nbr, emask)
        if self.enc_tf is not None:
            h = self.enc_tf(h, src_key_padding_mask=~mask)
        return self.to_code(h) * mask.unsqueeze(-1)

    @staticmethod
    def quantize(z: Tensor) -> Tensor:
        """``sign(z)`` (±1, with +1 at 0) with the straight-through gradient."""
        return z + (torch.where(z >= 0, 1.0, -1.0).to(z.dtype) - z).detach()

    def codes(self, zq: Tensor) -> Tensor:
        """Code indices ``Σ_k [bit_k > 0] 2^k`` (``(B, L)`` int64) of ±1 bits."""
        weights = 2 ** torch.arange(self.n_bits, device=zq.device)
        return ((zq > 0).long() * weights).sum(-1)

    def bits(self, codes: Tensor) -> Tensor:
        """±1 bits ``(…, n_bits)`` (float) of code indices."""
        return (((codes.unsqueeze(-1) >> torch.arange(self.n_bits, device=codes.device)) & 1) * 2 - 1).float()

    # -- decoder -------------------------------------------------------------------------------------------------
    def decode(self, z: Tensor, mask: Tensor) -> Tensor:
        """Backbone coordinates ``(B, L, 4, 3)`` (Å) from codes ``z`` (±1 bits or continuous)."""
        return self.decode_parts(z, mask)[0]

    def decode_parts(self, z: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(coords, steps)``: the backbone ``(B, L, 4, 3)`` (Å) and the predicted steps between consecutive frames
        ``(B, L, 12)`` (the rotation's 9 entries row-major, then the translation in Å; row 0 unused). The steps are
        chained into starting frames (:func:`chain_frames`), which the structure module then refines."""
        z = z.to(self.from_code.weight.dtype)
        h = self.from_code(z) + _sinusoid(z.shape[1], self.from_code.out_features, z.device).to(z.dtype)
        h = self.dec_norm(self.dec_tf(h, src_key_padding_mask=~mask))
        step = self.step_head(h)
        rel_rot, rel_t = quat_wxyz_to_rot(step[..., :4]), step[..., 4:]
        rot, trans = chain_frames(rel_rot, rel_t / 10.0)  # nm, as the structure module works
        trans = trans - (trans * mask.unsqueeze(-1)).sum(1, keepdim=True) / mask.sum(1).clamp_min(1)[:, None, None]
        return self.structure(h, mask, rot.detach(), trans.detach()), torch.cat([rel_rot.flatten(-2), rel_t], -1)

    def forward(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["mask"]
        if self.alphabet == "3di":  # the fixed alphabet's tokens, one-hot: only the decoder learns
            onehot = nn.functional.one_hot(batch["tokens3di"], N_3DI).float()
            coords, steps = self.decode_parts(onehot, mask)
            return {"coords_q": coords, "steps_q": steps}
        z = self.encode(batch["coords"], mask)
        zq = self.quantize(z)
        (coords_q, steps_q), (coords_c, steps_c) = self.decode_parts(zq, mask), self.decode_parts(z, mask)
        return {"z": z, "zq": zq, "coords_q": coords_q, "coords_c": coords_c, "steps_q": steps_q, "steps_c": steps_c}
