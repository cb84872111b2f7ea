"""Machine D: the winner fine-tune collapse of the 1.8x search, replayed (run from the repository root)."""
import copy, json, sys, time, torch, logging
from compactnet.models import create_model, load_weights
from compactnet.data import load_cifar10
from compactnet.search.groups import GroupPruner
from compactnet.search.loop import finetune, recalibrate_bn, subset
from compactnet.train import evaluate, setup_threads
setup_threads(2)
ds = load_cifar10(None)  # COMPACTNET_DATA
h = json.load(open('./results/machine-d/table5/ort-1p8x/search/history.json'))[:4]
base = create_model('mobilenetv2'); load_weights(base, './compactnet/assets/mobilenetv2.cifar10.safetensors'); base.eval()
seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
train_sub = subset(ds.train, 2000, seed); val = subset(ds.val, 1000, 0)
print('base val', evaluate(base, val))
m = copy.deepcopy(base)
GroupPruner(m, 'paper', example_input=torch.zeros(1,3,32,32)).replay(h)
recalibrate_bn(m, train_sub, 4, seed=seed); print('cut only', evaluate(m, val))
finetune(m, train_sub, 10, 64, 0.005, seed); recalibrate_bn(m, train_sub, 4, seed=seed)
print('cand 10 steps', evaluate(m, val))
st = copy.deepcopy(m.state_dict())
for name, teacher, split in [('60 distil full', base, ds.train), ('60 plain full', None, ds.train), ('60 distil sub', base, train_sub)]:
    m.load_state_dict(st)
    finetune(m, split, 60, 64, 0.005, seed+1, teacher)
    recalibrate_bn(m, train_sub, 4, seed=seed)
    a = evaluate(m, val)
    recalibrate_bn(m, train_sub, 40, seed=seed)
    print(name, a, 'bn40', evaluate(m, val), flush=True)
