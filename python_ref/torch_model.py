"""fusedvae's VAE as one PyTorch module, built from the model's description (model_spec.py).

Each module of the description with tensors becomes a submodule registered under its name, so the
state_dict keys are exactly the safetensors names (encoder.0.weight, encoder.mu.bias,
decoder.out.weight, ...), in the flat buffer's carving order; a module without tensors (an
activation) is a function applied in its place. The encoder's modules run in order, then the mu and
logvar heads (logvar clamped to [logvar_min, logvar_max], as fusedvae does), z = mu + exp(logvar /
2) * eps, then the decoder's modules (its output: logits for Bernoulli, means otherwise).

    model = VAE(model_spec.mlp_vae(784, [400], 20, "relu"))
    model = VAE.from_safetensors("runs/X/model.safetensors")   # float64, the recorded architecture

torch_peer.py (the benchmark's PyTorch peer) trains it; torch_vae.py evaluates checkpoints with it.
Importing this module needs torch.
"""
import numpy as np
import torch
from torch import nn

try:  # installed inside the fusedvae package (fusedvae/_ref), where fusedvae.load_run uses it
    from . import checkpoint, model_spec
except ImportError:  # run from python_ref/, as its scripts do
    import checkpoint
    import model_spec


def _linear(module):
    return nn.Linear(module["in"], module["out"])


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh}


def _activation(module):
    return _ACTIVATIONS[module["function"]]


# kind -> builder(module): an nn.Module (registered under the module's name; its parameters are
# the module's tensors, same names and shapes) or a plain function (a module without tensors).
MODULE_KINDS = {"linear": _linear, "activation": _activation}


class VAE(nn.Module):
    """The description's VAE; forward(x, eps=None) -> (decoder output, mu, clamped logvar)."""

    def __init__(self, spec, logvar_min=-30.0, logvar_max=20.0):
        super().__init__()
        self.spec = spec
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)
        built = {}
        for module in model_spec.modules(spec):  # carving order: the parameters' order too
            built[id(module)] = self._register(module, MODULE_KINDS[module["kind"]](module))
        # What forward calls, in plain lists (nn.Module registers only the named submodules above).
        self._encoder = [built[id(m)] for m in spec["encoder"]]
        self._heads = [built[id(spec["mu"])], built[id(spec["logvar"])]]
        self._decoder = [built[id(m)] for m in spec["decoder"]]

    def _register(self, module, made):
        """Places an nn.Module under its dotted name (nested nn.ModuleDicts: "encoder.mu" is
        self.encoder["mu"]); returns what forward calls."""
        if not isinstance(made, nn.Module):
            return made
        *path, leaf = module["name"].split(".")
        parent = self
        for part in path:
            if part not in parent._modules:
                parent.add_module(part, nn.ModuleDict())
            parent = parent._modules[part]
        parent.add_module(leaf, made)
        return made

    @classmethod
    def from_safetensors(cls, path, dtype=torch.float64):
        """The model a fusedvae run saved (its model.safetensors), with the architecture and the
        logvar clamp its __metadata__ records; strict: every tensor, nothing else."""
        tensors, metadata = checkpoint.load_safetensors(path)
        cfg = checkpoint.model_config(metadata)
        model = cls(model_spec.from_config(cfg), cfg["logvar_min"], cfg["logvar_max"]).to(dtype)
        model.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float64))
                               for k, v in tensors.items()}, strict=True)
        model.config = cfg
        return model

    def params(self):
        """{safetensors name: parameter}."""
        return dict(self.named_parameters())

    def encode(self, x):
        h = x
        for step in self._encoder:
            h = step(h)
        mu, logvar = self._heads
        return mu(h), logvar(h).clamp(self.logvar_min, self.logvar_max)

    def decode(self, z):
        h = z
        for step in self._decoder:
            h = step(h)
        return h

    def forward(self, x, eps=None):
        """(decoder output, mu, logvar) for z = mu + exp(logvar / 2) * eps; eps ~ N(0, I) when
        None."""
        mu, logvar = self.encode(x)
        noise = torch.randn_like(mu) if eps is None else eps
        return self.decode(mu + torch.exp(0.5 * logvar) * noise), mu, logvar
