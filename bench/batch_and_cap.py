"""Row-norm cap and batch size for TopK skip transcoders (k 32, expansion 8) at layers 11 and 6 of smollm2-135m.

    python bench/batch_and_cap.py 240000 11,6        # tokens, layers; about 10 minutes on 2 cores

One harvest of the mixture (special tokens excluded) feeds four runs: no cap at 4096-row batches (the set's old
settings), cap 8 at 4096, cap 8 at 1024, cap 8 at 1024 with half the learning rate. Each is evaluated on 32 held-out
contexts (CE loss recovered with the layer spliced, FVU, latents never firing). Writes bench/out/batch_and_cap/results.json.
"""
import itertools, json, sys, time, logging
import torch
import mechscope as ms
from mechscope.activations import ActivationStore, StoreConfig
from mechscope.activations.store import harvest
from mechscope.data import PackConfig, open_source, pack, special_ids
from mechscope.evals import evaluate
from mechscope.training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train
logging.basicConfig(level=logging.WARNING)
torch.set_num_threads(2)
TOK = int(sys.argv[1]) if len(sys.argv) > 1 else 240_000
layers = [int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "11,6").split(",")]
model = ms.load_model("smollm2-135m")
hooks = [h for l in layers for h in (f"blocks.{l}.mlp_in", f"blocks.{l}.mlp_out")]
ctx = pack(open_source("mixture"), model.tokenizer, PackConfig(context_size=128))
rows = {h: [] for h in hooks}; n = 0; t0 = time.time()
for _, chunk in harvest(model, ctx, hooks, model_batch=16, exclude=special_ids(model.tokenizer)):
    for h in hooks: rows[h].append(chunk[h])
    n += chunk[hooks[0]].shape[0]
    if n >= TOK: break
tensors = {h: torch.cat(v)[:TOK] for h, v in rows.items()}
print("harvest", time.time() - t0, flush=True)
for l in layers:
    nn_ = tensors[f"blocks.{l}.mlp_out"].float().norm(dim=-1)
    print(l, "out norm median", float(nn_.median()), "p99.9", float(nn_.quantile(0.999)), "max", float(nn_.max()),
          "frac>8x", float((nn_ > 8 * nn_.median()).float().mean()))
ev = list(itertools.islice(pack(open_source("mixture@heldout"), model.tokenizer, PackConfig(context_size=128)), 32))
res = {}
for name, cap, batch, lr in [("base", None, 4096, 2.4e-3), ("cap8", 8.0, 4096, 2.4e-3), ("cap8_b1024", 8.0, 1024, 2.4e-3),
                             ("cap8_b1024_lr1.2", 8.0, 1024, 1.2e-3)]:
    store = ActivationStore.from_tensors(tensors, StoreConfig(batch_size=batch, buffer_rows=4 * 4096))
    steps = TOK // batch
    cfg = TrainConfig(optim=OptimConfig(lr=lr, warmup_steps=min(20, steps // 10)),
                      loop=LoopConfig(steps=steps, log_every=max(1, steps // 5), row_norm_cap=cap))
    specs = [DictionarySpec("skip_transcoder", hook=f"blocks.{l}.mlp_in", hook_out=f"blocks.{l}.mlp_out",
                            activation="topk", k=32, expansion=8, name=f"L{l}") for l in layers]
    t1 = time.time()
    r = train(store, specs, cfg, out=f"bench/out/batch_and_cap/run_{name}", overwrite=True, model_name="smollm2-135m")
    tt = time.time() - t1
    rep = evaluate(model, r.dictionaries, ev, model_batch=16).to_json()["dictionaries"]
    for dn, e in rep.items():
        res[f"{name}/{dn}"] = dict(ce=round(e["downstream"]["ce_recovered"], 3), fvu=round(e["fvu"], 3),
                                   dead=round(e["dead_fraction"], 3), train_s=round(tt))
        print(name, dn, res[f"{name}/{dn}"], flush=True)
json.dump(res, open("bench/out/batch_and_cap/results.json", "w"), indent=1)
