import torch
import torch.nn.functional as F
from torch import nn

import losslab as ll

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3)).double()  # 131 parameters
x, y = torch.randn(64, 4, dtype=torch.float64), torch.randint(0, 3, (64,))
obj = ll.Objective(model, F.cross_entropy, (x, y))
