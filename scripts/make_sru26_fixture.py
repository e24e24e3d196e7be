"""Golden cases from the official package: writes tests/fixtures/sru26_cases.pt with random configurations of
PyPI `sru` 2.6.0's SRU and SRUCell (every keyword but custom_m), each with the package's initial state_dict
for a seed, a perturbed state_dict, inputs, and the float64 outputs, c_n and gradients (of the input, c0 and
every trainable parameter) in training and evaluation mode. Numbers only: tests/test_sru26.py holds
``sru.SRU`` / ``sru.SRUCell`` to them without the package.

Run it with the official package installed in a scratch environment (it compiles its C++ at import)::

    python -m venv /tmp/sru26 && /tmp/sru26/bin/pip install torch==2.13.0 sru==2.6.0 ninja
    /tmp/sru26/bin/python scripts/make_sru26_fixture.py [--cases 48] [--out tests/fixtures/sru26_cases.pt]

On the CPU sru 2.6 runs its pure-PyTorch recurrence when gradients are on (it warns "Are you sure?"),
which is float64-capable: these numbers are sru 2.6's own, to float64 round-off.
"""
import argparse
import random
import warnings

import torch


def random_config(rng):
    """One configuration: the class, its keywords, and the shapes to run it on."""
    cell = rng.random() < 0.25
    bidirectional = rng.random() < 0.4
    hidden = rng.randint(1, 5)
    out = hidden * (2 if bidirectional else 1)
    input_size = out if rng.random() < 0.4 else rng.randint(1, 7)
    kw = dict(input_size=input_size, hidden_size=hidden, dropout=rng.choice([0.0, 0.0, 0.3]),
              rnn_dropout=rng.choice([0.0, 0.0, 0.25]), bidirectional=bidirectional,
              use_tanh=rng.random() < 0.4, highway_bias=rng.choice([0.0, -1.0, -3.0, 0.5]),
              has_skip_term=rng.random() < 0.8, layer_norm=rng.random() < 0.35, v1=rng.random() < 0.2,
              amp_recurrence_fp16=rng.random() < 0.2, normalize_after=rng.random() < 0.5,
              weight_c_init=rng.choice([None, None, 0.5]))
    if rng.random() < 0.7:  # else the class's own default (SRUCell: True, SRU: False)
        kw["rescale"] = rng.random() < 0.5
    proj = rng.choice([0, 0, 1, 2, 3, 8])  # 8: above the sizes, which sru 2.6 ignores without a word
    if cell:
        kw["n_proj"] = proj
    else:
        kw.update(num_layers=rng.randint(1, 3), projection_size=proj,
                  nn_rnn_compatible_return=rng.random() < 0.3, proj_input_to_hidden_first=rng.random() < 0.3)
    shapes = dict(length=rng.randint(1, 5), batch=rng.randint(1, 3), with_c0=rng.random() < 0.5,
                  with_mask=rng.random() < 0.4, input_2d=cell and rng.random() < 0.2)
    return ("SRUCell" if cell else "SRU"), kw, shapes


def run(module, x, c0, mask, training, seed):
    module.train(training)
    x = x.clone().requires_grad_()
    c0 = None if c0 is None else c0.clone().requires_grad_()
    torch.manual_seed(seed)  # the dropout masks
    h, c_n = module(x, c0, mask_pad=mask)
    g = torch.Generator().manual_seed(seed + 1)
    loss = (h * torch.randn(h.shape, generator=g, dtype=h.dtype)).sum() + \
        (c_n * torch.randn(c_n.shape, generator=g, dtype=c_n.dtype)).sum()
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    leaves = [x] + ([] if c0 is None else [c0]) + [p for _, p in params]
    grads = torch.autograd.grad(loss, leaves)
    names = ["input"] + ([] if c0 is None else ["c0"]) + [n for n, _ in params]
    return dict(h=h.detach(), c_n=c_n.detach(), grads=dict(zip(names, grads)))


def main():
    import sru
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=48)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--out", default="tests/fixtures/sru26_cases.pt")
    args = ap.parse_args()
    assert sru.__version__ == "2.6.0", f"expected the official sru 2.6.0, found {sru.__version__}"
    warnings.filterwarnings("ignore")
    rng = random.Random(args.seed)
    cases = []
    for i in range(args.cases):
        cls, kw, shapes = random_config(rng)
        init_seed = 10_000 + i
        torch.manual_seed(init_seed)
        module = getattr(sru, cls)(**kw)
        init = {k: v.clone() for k, v in module.state_dict().items()}
        g = torch.Generator().manual_seed(init_seed)
        with torch.no_grad():  # move every trained value off its init, so that each one is tested
            for name, p in module.named_parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        module.double()
        state = {k: v.clone() for k, v in module.state_dict().items()}
        L, B = shapes["length"], shapes["batch"]
        n_in = module.input_size
        out = module.output_size
        x = torch.randn(B, n_in, generator=g, dtype=torch.float64) if shapes["input_2d"] else \
            torch.randn(L, B, n_in, generator=g, dtype=torch.float64)
        if shapes["input_2d"]:
            L = 1
        layers = kw.get("num_layers")
        c0 = torch.randn(*(() if layers is None else (layers,)), B, out, generator=g, dtype=torch.float64) \
            if shapes["with_c0"] else None
        mask = None
        if shapes["with_mask"] and not shapes["input_2d"]:
            lengths = torch.randint(1, L + 1, (B,), generator=g)
            lengths[0] = L  # sru 2.6 needs one full-length sequence only for packing; keep the cases alike
            mask = torch.arange(L)[:, None] >= lengths[None, :]
        results = {mode: run(module, x, c0, mask, mode == "train", 20_000 + i) for mode in ("train", "eval")}
        cases.append(dict(cls=cls, kwargs=kw, init_seed=init_seed, init=init, state=state, x=x, c0=c0, mask=mask,
                          dropout_seed=20_000 + i, results=results))
    torch.save(dict(version=sru.__version__, torch=str(torch.__version__), cases=cases), args.out)
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
