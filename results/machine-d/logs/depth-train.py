"""Accuracy of MobileNetV2 with residual blocks removed (Identity), distilled for E epochs (default preset's retrain)."""
import sys, time, json
import torch
from torch import nn
from compactnet.data import load_cifar10
from compactnet.models import create_model, load_weights
from compactnet.train import evaluate, get_recipe, setup_threads, train

drop = [int(x) for x in sys.argv[1].split(",")]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
W = "/work/main/compactnet/assets/mobilenetv2.cifar10.safetensors"
setup_threads(None)
data = load_cifar10(None)
model = load_weights(create_model("mobilenetv2"), W)
for i in drop:
    model.features[i] = nn.Identity()
teacher = load_weights(create_model("mobilenetv2"), W).eval()
before = evaluate(model, data.test)
t = time.time()
res = train(model, data.train, data.val, get_recipe("finetune", epochs=epochs), seed=0, teacher=teacher)
after = evaluate(model, data.test)
print(json.dumps({"drop": drop, "epochs": epochs, "before": before, "after": after, "best_val": res.best_val,
                  "params": sum(p.numel() for p in model.parameters()), "min": (time.time() - t) / 60}))
