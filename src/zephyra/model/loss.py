"""Fused linear + cross-entropy: the loss without ever holding the (N, V) logits.

The forward pass walks the tokens in chunks: for each chunk it computes the logits, the loss, and at once the
gradients with respect to the hidden states and the output matrix, then drops the logits. The backward pass
only scales the stored gradients. Same FLOPs as logits + cross-entropy + their backward, but peak memory is
one chunk's logits instead of all of them in fp32, and there is no separate pass back over the logits.
(Liger-Kernel's FusedLinearCrossEntropy does the same on GPU; on CPU nothing in torch or transformers does.)
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    if torch.is_autocast_enabled(t.device.type):
        return torch.get_autocast_dtype(t.device.type)
    return t.dtype


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunk: int):
        # h (N, C), weight (V, C), target (N,)
        cd = _compute_dtype(h)
        w = weight.to(cd)
        valid = target != IGNORE_INDEX
        n_valid = valid.sum().clamp(min=1)
        scale = (valid.float() / n_valid)[:, None]  # (N, 1): d(mean loss)/d(row loss)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(h, dtype=torch.float32) if need_h else None
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        tiny = torch.finfo(torch.float32).tiny
        for s in range(0, h.shape[0], chunk):
            hc = h[s:s + chunk].to(cd)  # (n, C)
            rows = torch.arange(hc.shape[0], device=h.device)
            yc = target[s:s + chunk].clamp(min=0)
            # one fused kernel reads the (n, V) logits and writes fp32 probabilities; the loss is -log p[target].
            # Elementwise passes over (n, V), not the matmuls, dominate this loss on CPU: keep them to three.
            p = torch.softmax(hc @ w.T, dim=-1, dtype=torch.float32)  # (n, V)
            p_target = p[rows, yc]
            total += (-(p_target.clamp(min=tiny).log()) * valid[s:s + chunk]).sum()
            if need_h or need_w:
                p[rows, yc] = p_target - 1.0  # d(row loss)/d(logits) = softmax - onehot
                g = p.to(cd)
                sc = scale[s:s + chunk]
                if need_h:
                    grad_h[s:s + chunk] = (g @ w).float() * sc  # row scale applied on (n, C), not (n, V)
                if need_w:
                    grad_w += (g.T @ (hc * sc.to(cd))).float()
        ctx.save_for_backward(grad_h if need_h else None, grad_w if need_w else None)
        ctx.dtypes = (h.dtype, weight.dtype)
        return total / n_valid

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        gh = (grad_h * grad_out).to(h_dtype) if grad_h is not None else None
        gw = (grad_w * grad_out).to(w_dtype) if grad_w is not None else None
        return gh, gw, None, None


def fused_linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor,
                               chunk: int = 256) -> torch.Tensor:
    """Mean cross-entropy of ``h @ weight.T`` against ``target`` (ignore index -100), chunked over tokens."""
    if chunk <= 0:
        chunk = max(1, h.shape[0])
    return _FusedLinearCrossEntropy.apply(h, weight, target, chunk)
