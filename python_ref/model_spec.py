#!/usr/bin/env python3
"""The VAE's architecture as data: a list of modules with PyTorch names, from which the flat
parameter layout, the initialisation, the safetensors names, the float64 reference model
(model_ref.py) and the PyTorch module (torch_model.py) are all derived.

A description ("spec") is a plain dict of lists and dicts (JSON-serialisable):

    {"encoder": [module, ...],      # input_dim -> last width, applied in order
     "mu":      linear module,      # the two heads read the encoder's output
     "logvar":  linear module,
     "decoder": [module, ...]}      # latent_dim -> input_dim, applied in order

and a module is one of the kinds in MODULE_KINDS:

    {"kind": "linear", "name": "encoder.0", "in": 784, "out": 400}
    {"kind": "activation", "function": "relu"}        # relu | tanh; no tensors
    {"kind": "gru", "name": "encoder.rnn", "in": 7, "hidden": 64, "layers": 2,
     "bidirectional": true, "out": 128}               # nn.GRU (batch_first)

The MLP VAE (mlp_vae) is encoder.0 .. encoder.{n-1} (each followed by the activation), the heads
encoder.mu and encoder.logvar, then decoder.0 .. decoder.{n-1} (the hidden widths in reverse, each
followed by the activation) and decoder.out (no activation: logits or means). A linear module
holds "<name>.weight" [out, in] then "<name>.bias" [out] (nn.Linear's names and shapes). The flat
parameter buffer is carved in the order encoder modules, mu, logvar, decoder modules, each
module's tensors in the order its kind lists them: the layout of host/model/model_config.h and of
model.safetensors.

Command line (for comparing the layout with the C++ one):

    python3 python_ref/model_spec.py --input-dim 784 --hidden 400 --latent 20 [--activation relu]

prints one line, one JSON object (json.dumps with its default separators):

    {"tensors": [["encoder.0.weight", [400, 784], 0], ["encoder.0.bias", [400], 313600], ...],
     "total": 652824}

each tensor as [name, shape, offset in floats] in carving order, and the total number of floats.
--hidden takes comma-separated widths (400 or 1024,512; an empty string for none); --spec prints
the description itself instead, as one JSON object. `--layout-of JSON` prints the layout of any
description given as one JSON object (modules of every kind, GRUs included).
"""
import argparse
import json
import math
from collections import namedtuple

ACTIVATIONS = ("relu", "tanh")


# ------------------------------------------------------------------------------------------------
# Module kinds: what each holds and how it is initialised. A new kind is one entry here (and its
# forward/backward in model_ref.py, its nn.Module in torch_model.py).

ModuleKind = namedtuple("ModuleKind", "tensors init_bound")
# tensors(module) -> [(suffix, shape), ...] in carving order; the tensor's name is
#                    "<module name>.<suffix>".
# init_bound(module) -> b: every tensor of the module is drawn from U(-b, b) (None: no tensors).


def _linear_tensors(m):
    return [("weight", (m["out"], m["in"])), ("bias", (m["out"],))]


def gru_tensors(m):
    """nn.GRU's parameters in its order: per layer k, per direction (forward, then "_reverse"),
    weight_ih_l{k} [3H, in_k], weight_hh_l{k} [3H, H], bias_ih_l{k} [3H], bias_hh_l{k} [3H];
    in_0 = in, in_k = dirs * H above (gru_ref.py and host/ops/gru_cpu.h carve the same)."""
    h, dirs = m["hidden"], 2 if m["bidirectional"] else 1
    tensors = []
    for layer in range(m["layers"]):
        layer_in = m["in"] if layer == 0 else dirs * h
        for d in range(dirs):
            suffix = f"_l{layer}" + ("_reverse" if d == 1 else "")
            tensors += [("weight_ih" + suffix, (3 * h, layer_in)),
                        ("weight_hh" + suffix, (3 * h, h)),
                        ("bias_ih" + suffix, (3 * h,)), ("bias_hh" + suffix, (3 * h,))]
    return tensors


MODULE_KINDS = {
    # nn.Linear's default initialisation: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
    "linear": ModuleKind(tensors=_linear_tensors, init_bound=lambda m: 1.0 / math.sqrt(m["in"])),
    "activation": ModuleKind(tensors=lambda m: [], init_bound=lambda m: None),
    # nn.GRU's reset_parameters: every tensor ~ U(-1/sqrt(H), 1/sqrt(H)). A sequence module
    # ([batch, steps, in] -> [batch, steps, out]); model_ref.py has no forward for it yet.
    "gru": ModuleKind(tensors=gru_tensors, init_bound=lambda m: 1.0 / math.sqrt(m["hidden"])),
}


def linear(name, n_in, n_out):
    return {"kind": "linear", "name": name, "in": int(n_in), "out": int(n_out)}


def gru(name, n_in, hidden, layers=1, bidirectional=False):
    return {"kind": "gru", "name": name, "in": int(n_in), "hidden": int(hidden),
            "layers": int(layers), "bidirectional": bool(bidirectional),
            "out": (2 if bidirectional else 1) * int(hidden)}


def activation(function):
    if function not in ACTIVATIONS:
        raise ValueError(f"activation {function!r} is not one of {', '.join(ACTIVATIONS)}")
    return {"kind": "activation", "function": function}


# ------------------------------------------------------------------------------------------------
# The MLP VAE


def mlp_vae(input_dim, hidden, latent_dim, activation_function="relu"):
    """The description of fusedvae's MLP VAE (see the module docstring)."""
    hidden = [int(h) for h in hidden]
    if input_dim < 1 or latent_dim < 1 or any(h < 1 for h in hidden):
        raise ValueError(f"sizes must be >= 1 (input {input_dim}, hidden {hidden}, "
                         f"latent {latent_dim})")
    act = activation(activation_function)
    encoder, width = [], input_dim
    for i, h in enumerate(hidden):
        encoder += [linear(f"encoder.{i}", width, h), dict(act)]
        width = h
    decoder, back = [], latent_dim
    for i, h in enumerate(reversed(hidden)):
        decoder += [linear(f"decoder.{i}", back, h), dict(act)]
        back = h
    decoder.append(linear("decoder.out", back, input_dim))
    return {"encoder": encoder, "mu": linear("encoder.mu", width, latent_dim),
            "logvar": linear("encoder.logvar", width, latent_dim), "decoder": decoder}


def from_config(cfg):
    """The MLP VAE a config names: any dict with input_dim, hidden, latent_dim and activation
    (model_ref's cfg, torch_vae's checkpoint config, a golden case's manifest)."""
    return mlp_vae(cfg["input_dim"], cfg["hidden"], cfg["latent_dim"], cfg["activation"])


def modules(spec):
    """Every module in carving order: encoder, mu, logvar, decoder."""
    return list(spec["encoder"]) + [spec["mu"], spec["logvar"]] + list(spec["decoder"])


def input_dim(spec):
    return (spec["encoder"][0] if spec["encoder"] else spec["mu"])["in"]


def latent_dim(spec):
    return spec["mu"]["out"]


# ------------------------------------------------------------------------------------------------
# Layout

Tensor = namedtuple("Tensor", "name shape offset")  # a tuple (name, shape, offset)


def module_tensors(module):
    """[(name, shape), ...] of one module, in carving order."""
    return [(f"{module['name']}.{suffix}", tuple(shape))
            for suffix, shape in MODULE_KINDS[module["kind"]].tensors(module)]


def param_layout(spec):
    """([Tensor(name, shape, offset), ...] in carving order, total floats)."""
    tensors, cursor = [], 0
    for module in modules(spec):
        for name, shape in module_tensors(module):
            tensors.append(Tensor(name, shape, cursor))
            cursor += math.prod(shape)
    return tensors, cursor


def tensor_views(spec, flat):
    """{name: view of flat with the tensor's shape} (writes go through to flat)."""
    tensors, total = param_layout(spec)
    if flat.shape != (total,):
        raise ValueError(f"flat buffer of shape {flat.shape}, the model has {total} floats")
    return {t.name: flat[t.offset:t.offset + math.prod(t.shape)].reshape(t.shape)
            for t in tensors}


def init_params(spec, rng, dtype=None):
    """A flat buffer initialised module by module in carving order, every tensor of a module from
    rng.uniform(-bound, bound) (a numpy Generator), as nn.Linear does (the draws are numpy's, not
    torch's)."""
    import numpy as np
    tensors, total = param_layout(spec)
    offsets = {t.name: t.offset for t in tensors}
    params = np.empty(total, dtype=dtype or np.float64)
    for module in modules(spec):
        held = module_tensors(module)  # contiguous in the buffer
        if not held:
            continue
        bound = MODULE_KINDS[module["kind"]].init_bound(module)
        start = offsets[held[0][0]]
        count = sum(math.prod(shape) for _, shape in held)
        params[start:start + count] = rng.uniform(-bound, bound, count)
    return params


def layout_json(spec):
    """The command line's output: one JSON object (see the module docstring)."""
    tensors, total = param_layout(spec)
    return json.dumps({"tensors": [[t.name, list(t.shape), t.offset] for t in tensors],
                       "total": total})


def parse_widths(items):
    """--hidden's values: comma-separated widths, possibly over several arguments."""
    return [int(w) for item in items for w in item.split(",") if w.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--input-dim", type=int, default=784)
    p.add_argument("--hidden", nargs="*", default=["400"],
                   help="hidden widths, comma-separated (e.g. 1024,512; '' for none)")
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    p.add_argument("--spec", action="store_true", help="print the description, not the layout")
    p.add_argument("--layout-of", metavar="JSON",
                   help="print the layout of this description (one JSON object) instead")
    a = p.parse_args(argv)
    if a.layout_of is not None:
        print(layout_json(json.loads(a.layout_of)))
        return 0
    try:
        spec = mlp_vae(a.input_dim, parse_widths(a.hidden), a.latent, a.activation)
    except ValueError as e:
        p.error(str(e))
    print(json.dumps(spec) if a.spec else layout_json(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
