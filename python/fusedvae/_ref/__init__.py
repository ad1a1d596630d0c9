"""python_ref's model description, checkpoint reader and PyTorch module (checkpoint.py,
model_spec.py, torch_model.py), installed here by the build so that fusedvae.load_run uses the
project's own code, not a copy of it."""
