"""PyTorch twin of the workspace's UNet and ResNet (crates/models/src/{unet,resnet}.rs) for
`cargo xtask bench step`: the same layers, widths and parameter counts, timed the same way
(forward + MSE loss, forward + backward, the Adam update alone, a whole step).

Protocol: one request per stdin line, `MODEL WIDTHS MESH BATCH REPS MIN_S` (e.g.
`unet 32,64,128 64 16 3 2.0`); one answer per stdout line, `params,fwd_ms,fwdbwd_ms,opt_ms,step_ms`
(best of REPS rounds after a warm-up round, more rounds, up to 20 x REPS, until the timed rounds
add up to MIN_S seconds: the same rule as the Rust side). Threads: argv[1] (the Rust side passes its own core count).
"""
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoidal(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=1)
    return emb


def group_norm(c):
    return nn.GroupNorm(math.gcd(c, 16), c, eps=1e-5, affine=True)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim):
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.skip(x) if self.skip is not None else x) + h


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = group_norm(c)
        self.qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x):
        n, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(n, 3 * c, h * w)
        scale = 1.0 / math.sqrt(math.sqrt(c))
        q, k, v = qkv[:, :c] * scale, qkv[:, c:2 * c] * scale, qkv[:, 2 * c:]
        weights = torch.softmax(q.transpose(1, 2) @ k, dim=2)
        out = (v @ weights.transpose(1, 2)).reshape(n, c, h, w)
        return x + self.proj(out)


class Unet(nn.Module):
    """The authors' UNet with one residual block per level (001 Table 7)."""

    def __init__(self, widths, cin=3, cout=3, res_blocks=1):
        super().__init__()
        c0 = widths[0]
        self.c0 = c0
        self.lin1 = nn.Linear(c0, 4 * c0)
        self.lin2 = nn.Linear(4 * c0, 4 * c0)
        e = 4 * c0
        self.encoder = nn.ModuleList([nn.Conv2d(cin, c0, 3, padding=1)])
        self.kinds = ["conv"]
        skips, ch = [c0], c0
        for level, width in enumerate(widths):
            for _ in range(res_blocks):
                self.encoder.append(ResBlock(ch, width, e))
                self.kinds.append("res")
                ch = width
                skips.append(ch)
            if level + 1 < len(widths):
                self.encoder.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                self.kinds.append("conv")
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, e)
        self.attn = Attention(ch)
        self.mid2 = ResBlock(ch, ch, e)
        self.decoder = nn.ModuleList()
        self.ups = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            for i in range(res_blocks + 1):
                skip = skips.pop()
                self.decoder.append(ResBlock(ch + skip, width, e))
                ch = width
                up = level > 0 and i == res_blocks
                self.ups.append(nn.Conv2d(ch, ch, 3, padding=1) if up else nn.Identity())
        self.out_norm = group_norm(c0)
        self.out_conv = nn.Conv2d(c0, cout, 3, padding=1)

    def forward(self, x, t):
        emb = self.lin2(F.silu(self.lin1(sinusoidal(t, self.c0))))
        hs, h = [], x
        for kind, stage in zip(self.kinds, self.encoder):
            h = stage(h) if kind == "conv" else stage(h, emb)
            hs.append(h)
        h = self.mid2(self.attn(self.mid1(h, emb)), emb)
        for res, up in zip(self.decoder, self.ups):
            h = res(torch.cat([h, hs.pop()], dim=1), emb)
            if isinstance(up, nn.Conv2d):
                h = up(F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))


class TimeEmbedding(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.sincos = 2 * (dim // 4)
        self.fc1 = nn.Linear(1, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, dim - self.sincos)

    def forward(self, t):
        mlp = self.fc3(F.relu(self.fc2(F.relu(self.fc1(t[:, None])))))
        if self.sincos == 0:
            return mlp
        return torch.cat([sinusoidal(t, self.sincos), mlp], dim=1)


class ResNet(nn.Module):
    """The authors' image-to-image ResNet (001 Table 7): `x + C2 LReLU(LN(C1 x + e(t)))` blocks."""

    def __init__(self, hidden, blocks=2, cin=3, cout=3):
        super().__init__()
        self.open = nn.Conv2d(cin, hidden, 1)
        self.conv1 = nn.ModuleList([nn.Conv2d(hidden, hidden, 3, padding=1) for _ in range(blocks)])
        self.emb = nn.ModuleList([TimeEmbedding(hidden) for _ in range(blocks)])
        self.conv2 = nn.ModuleList([nn.Conv2d(hidden, hidden, 3, padding=1) for _ in range(blocks)])
        self.close = nn.Conv2d(hidden, cout, 1)

    def forward(self, x, t):
        h = self.open(x)
        for c1, e, c2 in zip(self.conv1, self.emb, self.conv2):
            z = c1(h) + e(t)[:, :, None, None]
            z = F.layer_norm(z, z.shape[1:], eps=1e-5)
            h = h + c2(F.leaky_relu(z, 0.2))
        return self.close(h)


def build(model, widths):
    if model == "unet":
        return Unet(widths)
    if model == "resnet":
        (hidden,) = widths
        return ResNet(hidden)
    raise ValueError(f"unknown model {model}")


def closures(net, opt, x, t, clean):
    def loss():
        return F.mse_loss(net(x, t), clean)

    def fwd():  # as in training: the autograd graph is recorded, as candle does
        loss()

    def fwdbwd():
        opt.zero_grad(set_to_none=True)
        loss().backward()

    def step():
        fwdbwd()
        opt.step()

    return fwd, fwdbwd, step


def main():
    """Requests, one per line: `MODEL WIDTHS MESH BATCH REPS MIN_S` answers
    `params,fwd,fwdbwd,opt,step` (best ms of the rounds); `step MODEL WIDTHS MESH BATCH SIDE_S`
    times more steps on the batch of the last such request for that mesh, one or more until
    they add up to SIDE_S seconds (at most 100), and answers the least ms."""
    torch.set_num_threads(int(sys.argv[1]))
    torch.manual_seed(0)
    cache, batches = {}, {}
    for line in iter(sys.stdin.readline, ""):
        fields = line.split()
        single = fields[0] == "step"
        if single:
            model, widths, mesh, batch, side_s = fields[1:]
            side_s = float(side_s)
        else:
            model, widths, mesh, batch, reps, min_s = fields
            reps, min_s = int(reps), float(min_s)
        widths = tuple(int(w) for w in widths.split(","))
        mesh, batch = int(mesh), int(batch)
        key = (model, widths)
        if key not in cache:
            net = build(model, widths)
            cache[key] = (net, torch.optim.Adam(net.parameters(), lr=1e-6))
        net, opt = cache[key]
        if single:
            _, _, step = closures(net, opt, *batches[(mesh, batch)])
            times = []
            while not times or (sum(times) < side_s and len(times) < 100):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            print(f"{min(times) * 1e3:.4f}", flush=True)
            continue
        params = sum(p.numel() for p in net.parameters())
        clean = torch.rand(batch, 3, mesh, mesh)
        t = torch.rand(batch)
        tb = t[:, None, None, None]
        x = clean * tb + torch.randn(batch, 3, mesh, mesh) * (1 - tb)
        batches[(mesh, batch)] = (x, t, clean)
        fwd, fwdbwd, step = closures(net, opt, x, t, clean)

        best = [math.inf] * 4
        total, rep = 0.0, 0
        while rep <= reps or (total < min_s and rep <= 20 * reps):
            times = []
            for f in (fwd, fwdbwd, opt.step, step):
                t0 = time.perf_counter()
                f()
                times.append((time.perf_counter() - t0) * 1e3)
            if rep > 0:
                total += sum(times) / 1e3
                best = [min(a, b) for a, b in zip(best, times)]
            rep += 1
        print(f"{params}," + ",".join(f"{v:.4f}" for v in best), flush=True)


if __name__ == "__main__":
    main()
