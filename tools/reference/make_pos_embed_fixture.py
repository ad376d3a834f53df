"""timm's resample_abs_pos_embed (bicubic, antialias=True) in PyTorch -> tests/fixtures/pos_embed.json."""
import json

import torch
import torch.nn.functional as F

torch.manual_seed(0)
cases = []
for g_old, g_new, d in [(4, 6, 3), (6, 4, 3), (3, 5, 2), (4, 4, 2), (7, 3, 2)]:
    pos = torch.randn(1, 1 + g_old * g_old, d, dtype=torch.float64)
    grid = pos[:, 1:].reshape(1, g_old, g_old, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(g_new, g_new), mode="bicubic", antialias=True, align_corners=False)
    out = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g_new * g_new, d)], 1)
    cases.append({"g_old": g_old, "g_new": g_new, "d": d, "pos": pos.flatten().tolist(), "out": out.flatten().tolist()})
with open("tests/fixtures/pos_embed.json", "w") as f:
    json.dump(cases, f)
print("wrote", len(cases), "cases")
