"""Golden cases from sru 3.0.0.dev6 (the pre-release after 2.6): writes tests/fixtures/sru3_cases.pt with a few
configurations of its SRU and SRUCell, each with its state_dict (``transform_module.*``), inputs and float64
outputs and c_n in evaluation mode. tests/test_sru26.py loads them through ``sru.state_dict_from_sru3``.

    python -m venv /tmp/sru30v && /tmp/sru30v/bin/pip install torch==2.13.0 sru==3.0.0.dev6 ninja
    cd /tmp && /tmp/sru30v/bin/python /path/to/scripts/make_sru3_fixture.py --out /path/to/tests/fixtures/sru3_cases.pt

(run from outside the repository, so that `import sru` finds the installed package, not this one).
"""
import argparse
import warnings

import torch

# (class, sru 3.0 keywords, the same configuration in sru 2.6's keywords: 3.0's SRUCell defaults to rescale=False,
# normalize_after=True, where 2.6's has True, False)
CONFIGS = [
    ("SRU", dict(input_size=5, hidden_size=4, num_layers=2), dict(input_size=5, hidden_size=4, num_layers=2)),
    ("SRU", dict(input_size=6, hidden_size=3, num_layers=2, bidirectional=True, projection_size=2, layer_norm=True,
                 rescale=True, highway_bias=-1.0),
     dict(input_size=6, hidden_size=3, num_layers=2, bidirectional=True, projection_size=2, layer_norm=True,
          rescale=True, highway_bias=-1.0)),
    ("SRUCell", dict(input_size=4, hidden_size=4, use_tanh=True, has_skip_term=False),
     dict(input_size=4, hidden_size=4, use_tanh=True, has_skip_term=False, rescale=False)),
    ("SRUCell", dict(input_size=7, hidden_size=3, projection_size=2, bidirectional=True, normalize_after=True,
                     layer_norm=True),
     dict(input_size=7, hidden_size=3, n_proj=2, bidirectional=True, normalize_after=True, layer_norm=True,
          rescale=False)),
]


def main():
    import sru
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="sru3_cases.pt")
    args = ap.parse_args()
    assert sru.__version__ == "3.0.0.dev6", f"expected sru 3.0.0.dev6, found {sru.__version__} at {sru.__file__}"
    warnings.filterwarnings("ignore")
    cases = []
    for i, (cls, kw3, kw26) in enumerate(CONFIGS):
        torch.manual_seed(i)
        module = getattr(sru, cls)(**kw3)
        with torch.no_grad():  # weight_c and the biases off their init, so that each is tested
            for p in module.parameters():
                p.add_(0.3 * torch.randn_like(p))
        module.double().eval()
        x = torch.randn(5, 2, kw3["input_size"], dtype=torch.float64)
        c0 = torch.randn(*((kw3["num_layers"],) if cls == "SRU" else ()), 2, module.output_size, dtype=torch.float64)
        mask = torch.tensor([[0, 0], [0, 0], [0, 0], [0, 1], [0, 1]], dtype=torch.bool)
        h, c_n = module(x, c0, mask_pad=mask)
        cases.append(dict(cls=cls, kwargs26=kw26, state=module.state_dict(), x=x, c0=c0, mask=mask,
                          h=h.detach(), c_n=c_n.detach()))
    torch.save(dict(version=sru.__version__, cases=cases), args.out)
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
